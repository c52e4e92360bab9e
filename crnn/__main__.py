"""python -m crnn: the `crnn` command (crnn.command)."""

from crnn.command import main_exit

main_exit()
