/* countries.h - country names for messages: the country of a login as the player reads it, in
 * Korean or English, instead of its ISO alpha-2 code. */
#ifndef NOTIFY_COUNTRIES_H
#define NOTIFY_COUNTRIES_H

/* The name of the country of ISO alpha-2 code in lang ("ko", else English), borrowed and
 * static; code itself when the table does not know it (NULL when code is NULL). Thread-safe. */
const char *country_name(const char *code, const char *lang);

#endif
