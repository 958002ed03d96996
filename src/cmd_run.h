#ifndef KVMLITE_CMD_RUN_H
#define KVMLITE_CMD_RUN_H

#include <stddef.h>

#include "config.h"

/* Parses `kvmlite run` arguments (argv[0] is "run"). Returns 0, 1 when
 * --help was asked for, or -EINVAL with a one-line message in err. */
int run_parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen);

#endif
