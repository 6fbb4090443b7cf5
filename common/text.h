/* text.h: sizes and shapes in words, for the front ends' messages and
 * reports: the library's own functions (lib/text.c, compiled into the
 * front ends' core as well, since the shared library hides them). */
#ifndef PM_COMMON_TEXT_H
#define PM_COMMON_TEXT_H

#include "../lib/text.h"

#endif
