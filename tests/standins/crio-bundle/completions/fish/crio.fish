# nodeimage test stand-in
complete -c crio -a "config wipe help"
