/* actions.h - the names of the account.action event's actions, one table for every process
 * (config/schema/events/account.action.json lists the four that are emitted: all but "none").
 *
 * guard applies them as an account's policy, history stores the one a login got. They are
 * ordered from the mildest to the strictest: a player's policy "weakens" when its rank goes
 * down (guard). */
#ifndef ACTIONS_H
#define ACTIONS_H

enum action {
    ACTION_NONE,
    ACTION_NOTIFY,
    ACTION_KICK,
    ACTION_BLOCK_ABROAD,
    ACTION_LOCK,
    ACTION_COUNT,
};

/* "none", "notify", "kick", "block_abroad", "lock", indexed by enum action. */
extern const char *const ACTION_NAMES[ACTION_COUNT];

/* The action named name (its rank, mildest first), or -1 when name is NULL or no action. */
int action_index(const char *name);

#endif
