# nodeimage test stand-in for crio fish completion
complete -c crio -a "config wipe version"
