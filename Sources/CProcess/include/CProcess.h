// Process helpers for the control plane (CairnControl), kept apart from CCairn: CairnControl also
// loads NIO, whose C modules cannot share a compilation with liburing's headers.
#ifndef CPROCESS_H
#define CPROCESS_H
#include <spawn.h>

// posix_spawn_file_actions_addclosefrom_np (glibc 2.34): close every descriptor >= from in the child.
int cairn_spawn_closefrom(posix_spawn_file_actions_t *actions, int from);

// POSIX_SPAWN_SETSID (glibc 2.26): the child starts a session of its own.
int cairn_spawn_setsid_flag(void);

#endif
