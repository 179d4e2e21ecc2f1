// data_cli.h — the `modrwkv data ...` command line (convert, merge, inspect, verify, demo, bench). The options
// are parsed in datasets/data_cli.c; the work is done by the library functions of datasets/data_tools.h.
#pragma once

// argv[0] is "data"; argv[1] the subcommand. Returns the exit status; errors print one line
// "modrwkv: error: ..." and exit 1 (fatal).
int data_main(int argc, char** argv);
