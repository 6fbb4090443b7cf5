# bash completion for patchmap(1): commands, each command's options (read
# from `patchmap COMMAND --help`, so they follow the installed tool), the
# values of the options that take names, and files by extension.

# Values of the options that take names (tests/test-completion.sh checks
# them against the library's name tables).
_patchmap_pad_modes="zero constant edge reflect symmetric wrap"
_patchmap_backends="auto uffd sigsegv eager"
_patchmap_dtypes="same uint8 int8 uint16 int16 uint32 int32 float32 float64 int64 uint64 bool float16"
_patchmap_raw_dtypes="uint8 int8 uint16 int16 uint32 int32 float32 float64 int64 uint64 bool float16"
_patchmap_orders="window channel"
_patchmap_layouts="rows cols"
_patchmap_channel_axes="auto none first last"
_patchmap_pads="same valid"

# The commands, from `patchmap --help` (cached).
_patchmap_commands()
{
	if [[ -z ${_patchmap_cmds-} ]]; then
		_patchmap_cmds=$("${COMP_WORDS[0]}" --help 2>/dev/null |
			sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' | tr '\n' ' ')
	fi
	printf '%s\n' "$_patchmap_cmds"
}

# The long options of one command, from its --help (cached per command).
_patchmap_options()
{
	local cmd=$1 var=_patchmap_opts_${1//-/_}
	if [[ -z ${!var-} ]]; then
		printf -v "$var" '%s' "$("${COMP_WORDS[0]}" "$cmd" --help 2>/dev/null |
			grep -oE -- '--[a-z][a-z0-9-]*' | sort -u | tr '\n' ' ')"
	fi
	printf '%s\n' "${!var}"
}

_patchmap()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd=${COMP_WORDS[1]-} words=
	COMPREPLY=()

	if ((COMP_CWORD == 1)); then
		COMPREPLY=($(compgen -W "$(_patchmap_commands) --help --version" -- "$cur"))
		return
	fi
	case $prev in
	--pad-mode) words=$_patchmap_pad_modes ;;
	--backend) words=$_patchmap_backends ;;
	--dtype) words=$_patchmap_dtypes ;;
	--raw-dtype) words=$_patchmap_raw_dtypes ;;
	--order) words=$_patchmap_orders ;;
	--layout) words=$_patchmap_layouts ;;
	--channel-axis) words=$_patchmap_channel_axes ;;
	--pad) words=$_patchmap_pads ;;
	--filters | --rows)
		COMPREPLY=($(compgen -f -X '!*.npy' -- "$cur") $(compgen -d -- "$cur"))
		return ;;
	--mode) words="sum mean count" ;;
	--mask)
		COMPREPLY=($(compgen -f -X '!*.@(npy|pgm)' -- "$cur") $(compgen -d -- "$cur"))
		return ;;
	--out | --save-filters)
		COMPREPLY=($(compgen -f -X '!*.npy' -- "$cur") $(compgen -d -- "$cur") $([[ -z $cur ]] || compgen -W - -- "$cur"))
		return ;;
	--window | --step | --dilation | --shape | --size | --budget | --chunk | --threads | \
	--readahead | --scale | --offset | --pad-value | --raw-offset | --row-pitch | --random | \
	--seed | --nfilters | --blas-threads | --inject-error | --row-range | --sample | \
	--image-shape)
		return ;;
	esac
	if [[ -n $words ]]; then
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_patchmap_options "$cmd")" -- "$cur"))
		return
	fi
	case $cmd in
	demo | doctor | -*) ;;
	fold)
		COMPREPLY=($(compgen -f -X '!*.npy' -- "$cur") $(compgen -d -- "$cur"))
		;;
	*)
		# Images: the formats the tool reads, descriptors of the shim too.
		COMPREPLY=($(compgen -f -X '!*.@(npy|pgm|ppm|pnm|raw|tif|tiff|png|jpg|jpeg|patchmap)' -- "$cur")
			$(compgen -d -- "$cur"))
		;;
	esac
}
complete -o filenames -F _patchmap patchmap
