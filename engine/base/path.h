/* engine/base/path.h: directory helpers shared by the tools and the CA code. */
#ifndef TDM_ENGINE_BASE_PATH_H
#define TDM_ENGINE_BASE_PATH_H

#include <sys/types.h>

/* mkdir -p path: missing parents get mode 0755, the last component mode
 * (subject to the umask); existing directories are left as they are.
 * Returns 0, -ENOTDIR when path exists but is not a directory, -ENAMETOOLONG,
 * or another -errno from mkdir(2)/stat(2). */
int tdm_mkdir_parents(const char *path, mode_t mode);

struct tdm_diag;

/* Replace dir/name with size bytes of data durably: write dir/name.tmp (mode),
 * fdatasync, rename over dir/name, fsync dir. Returns 0, -ENAMETOOLONG
 * ("path too long") or -errno, with diag naming the file. Never retried. */
int tdm_file_replace(const char *dir, const char *name, const void *data, size_t size, mode_t mode,
                     struct tdm_diag *diag);

#endif
