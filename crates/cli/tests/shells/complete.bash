# Prints, one a line, what bash completes for the command line $2 with the
# completion script $1 loaded, as pressing Tab at the end of the line would.
source "$1"
line="$2"
read -ra COMP_WORDS <<<"$line"
# A line ending in a space is completing a new, empty word.
[[ "$line" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$line"
COMP_POINT=${#line}
spec="$(complete -p "${COMP_WORDS[0]}")"
function="$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")"
"$function" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
