/* banned.h - libc calls that are easy to misuse are compile errors everywhere (after git's
 * banned.h). Included into every translation unit by the Makefile (-include lib/banned.h).
 * Use snprintf, the buf module, gmtime_r/localtime_r and strtok_r instead. */
#ifndef BANNED_H
#define BANNED_H

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) BANNED(strncat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef gmtime
#define gmtime(t) BANNED(gmtime)
#undef localtime
#define localtime(t) BANNED(localtime)
#undef strtok
#define strtok(s, d) BANNED(strtok)
#undef gets
#define gets(s) BANNED(gets)

#endif
