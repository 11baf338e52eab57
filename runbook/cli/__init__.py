"""The command line: argument parsing, the console, the recap, ``apply`` on a terminal."""
