#define _GNU_SOURCE
#include <spawn.h>
#include "CProcess.h"

int cairn_spawn_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int cairn_spawn_setsid_flag(void) { return POSIX_SPAWN_SETSID; }
