// Doubles for the native kernel (_speedups.c): C++17's <charconv> reads them correctly
// rounded, like float(), and writes the shortest text that reads back to the same double,
// the digits of Python's repr, some ten times faster than CPython's dtoa.
// tests/native compares aek_repr_double with repr() on many doubles.
#include <charconv>
#include <cstring>
#include <system_error>

extern "C" int aek_parse_double(const char *first, const char *last, double *out) {
    auto r = std::from_chars(first, last, *out);
    return (r.ec == std::errc() && r.ptr == last) ? 0 : -1;
}

// Python's repr of a finite double into out (at least 40 bytes); returns its length.
extern "C" int aek_repr_double(double v, char *out) {
    char sci[40];
    auto r = std::to_chars(sci, sci + sizeof(sci), v, std::chars_format::scientific);
    if (r.ec != std::errc()) return -1;
    // sci is [-]d[.ddd]e(+|-)dd
    const char *p = sci, *end = r.ptr;
    char *o = out;
    if (*p == '-') *o++ = *p++;
    char digits[24];
    int n = 0;
    while (p < end && *p != 'e') {
        if (*p != '.') digits[n++] = *p;
        p++;
    }
    if (p >= end) return -1;
    p++;  // 'e'
    int sign = *p == '-' ? -1 : 1;
    p++;
    int exp = 0;
    while (p < end) exp = exp * 10 + (*p++ - '0');
    exp *= sign;
    int decpt = exp + 1;  // the decimal point sits after this many digits
    if (decpt <= -4 || decpt > 16) {
        // 1.5e-05, 1e+16: at least two exponent digits
        *o++ = digits[0];
        if (n > 1) {
            *o++ = '.';
            std::memcpy(o, digits + 1, n - 1);
            o += n - 1;
        }
        *o++ = 'e';
        int e = decpt - 1;
        *o++ = e < 0 ? '-' : '+';
        if (e < 0) e = -e;
        if (e >= 100) {
            *o++ = char('0' + e / 100);
            e %= 100;
        }
        *o++ = char('0' + e / 10);
        *o++ = char('0' + e % 10);
    } else if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++) *o++ = '0';
        std::memcpy(o, digits, n);
        o += n;
    } else if (decpt < n) {
        std::memcpy(o, digits, decpt);
        o += decpt;
        *o++ = '.';
        std::memcpy(o, digits + decpt, n - decpt);
        o += n - decpt;
    } else {
        std::memcpy(o, digits, n);
        o += n;
        for (int i = n; i < decpt; i++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    }
    return int(o - out);
}
