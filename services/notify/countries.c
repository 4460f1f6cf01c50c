/* countries.c - a small table of country names (Korean and English) for the countries logins
 * come from in the demo, the tests and most often in a Korean game's traffic. A code not in the
 * table is shown as the code. */
#include <stddef.h>
#include <string.h>

#include "countries.h"

static const struct {
    const char code[3];
    const char *ko, *en;
} COUNTRIES[] = {
    {"AE", "아랍에미리트", "United Arab Emirates"},
    {"AR", "아르헨티나", "Argentina"},
    {"AU", "호주", "Australia"},
    {"BR", "브라질", "Brazil"},
    {"CA", "캐나다", "Canada"},
    {"CH", "스위스", "Switzerland"},
    {"CN", "중국", "China"},
    {"DE", "독일", "Germany"},
    {"ES", "스페인", "Spain"},
    {"FR", "프랑스", "France"},
    {"GB", "영국", "United Kingdom"},
    {"HK", "홍콩", "Hong Kong"},
    {"ID", "인도네시아", "Indonesia"},
    {"IN", "인도", "India"},
    {"IT", "이탈리아", "Italy"},
    {"JP", "일본", "Japan"},
    {"KP", "북한", "North Korea"},
    {"KR", "대한민국", "South Korea"},
    {"MN", "몽골", "Mongolia"},
    {"MX", "멕시코", "Mexico"},
    {"MY", "말레이시아", "Malaysia"},
    {"NL", "네덜란드", "Netherlands"},
    {"NZ", "뉴질랜드", "New Zealand"},
    {"PH", "필리핀", "Philippines"},
    {"RU", "러시아", "Russia"},
    {"SA", "사우디아라비아", "Saudi Arabia"},
    {"SE", "스웨덴", "Sweden"},
    {"SG", "싱가포르", "Singapore"},
    {"TH", "태국", "Thailand"},
    {"TR", "튀르키예", "Türkiye"},
    {"TW", "대만", "Taiwan"},
    {"UA", "우크라이나", "Ukraine"},
    {"US", "미국", "United States"},
    {"VN", "베트남", "Vietnam"},
    {"ZZ", "알 수 없는 지역", "an unknown location"},
};

const char *country_name(const char *code, const char *lang)
{
    if (!code) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(COUNTRIES) / sizeof(COUNTRIES[0]); i++) {
        if (strcmp(COUNTRIES[i].code, code) == 0) {
            return lang && strcmp(lang, "ko") == 0 ? COUNTRIES[i].ko : COUNTRIES[i].en;
        }
    }
    return code;
}
