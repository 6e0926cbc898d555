# Prints, one a line, what zsh's completion system offers for the command
# line $2 with the completion functions in folder $1, by typing the line
# and Tab into an interactive zsh on a pseudo-terminal. Each step waits for
# the shell's answer rather than for time to pass.
zmodload zsh/zpty
zpty shell zsh -f -i
local out
# Markers are written split ('RE''ADY') so the echo of what was typed never
# matches them; only the shell's own output does.
zpty -w shell "PROMPT='RE''ADY> '"
zpty -r shell out '*READY> *'
zpty -w shell "fpath=($1 \$fpath); autoload -U compinit; compinit -u -D; print DO''NE"
zpty -r shell out '*DONE*READY> *'
# Every candidate passes through compadd: print it instead of showing a
# menu, and say when completion is over.
zpty -w shell 'compadd() { local -a hits; builtin compadd -O hits "$@"; (( $#hits )) && print -r -l -- "HIT:"${^hits}; }; finished() { print -r -- FIN''ISHED; }; comppostfuncs=(finished); print DO''NE'
zpty -r shell out '*DONE*READY> *'
zpty -w -n shell "$2"$'\t'
zpty -r shell out '*FINISHED*'
print -r -- "$out" | tr -d '\r' | grep -a 'HIT:' | sed 's/.*HIT://'
zpty -d shell
