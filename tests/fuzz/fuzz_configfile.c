/* The YAML configuration file, loaded from an anonymous file. */
#include <sys/mman.h>

#include <stdio.h>
#include <unistd.h>

#include "fuzz.h"

#include "../../common/common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct heavy_config	c;
	char			path[64], err[512];
	int			fd;

	if ((fd = memfd_create("heavyd-fuzz-config", MFD_CLOEXEC)) == -1)
		abort();
	if (write(fd, data, len) != (ssize_t)len)
		abort();
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	config_defaults(&c);
	if (config_load_file(&c, path, err, sizeof err) == 0)
		config_check(&c, err, sizeof err);
	config_clear(&c);
	close(fd);
	return 0;
}
