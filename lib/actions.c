/* actions.c - the table of action names (see actions.h). */
#include "actions.h"

#include <string.h>

const char *const ACTION_NAMES[ACTION_COUNT] = {"none", "notify", "kick", "block_abroad", "lock"};

int action_index(const char *name)
{
    for (int i = 0; name && i < ACTION_COUNT; i++) {
        if (strcmp(name, ACTION_NAMES[i]) == 0) {
            return i;
        }
    }
    return -1;
}
