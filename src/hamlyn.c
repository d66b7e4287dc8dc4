/*
 * hamlyn.c: main.  (Skeleton; the process model work fills it in.)
 */
#include "hm_core.h"
#include "hm_module.h"
#include "hm_log.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
    char mods[256];

    hm_modules_init();
    hm_modules_names(mods, sizeof(mods));
    printf("hamlyn version %s\nmodules: %s\n", HAMLYN_VERSION, mods);
    return 0;
}
