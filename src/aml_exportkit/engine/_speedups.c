/*
 * aml_exportkit.engine._speedups: the engine's native kernel.
 *
 * Three functions, each the exact counterpart of Python code that stays the reference
 * (tests/native compares them on generated input):
 *
 *   parse_fixture(body)   the elements of "[body]" (Django fixture objects) as Python
 *                         objects, like json.loads, except that the value of a fixture's
 *                         fields.json_data is returned as its raw JSON text (bytes);
 *   flatten(docs, max_depth, index_lists)
 *                         json_data texts flattened row-wise into columns of finished CSV
 *                         cells, like tabular.render.ColumnFlattener + value_cells;
 *   join_rows(parts, n)   columns of cells joined into CSV lines (CRLF), as UTF-8 bytes;
 *   csv_quote(values, specials)
 *                         strings quoted as Python's csv writer quotes a cell (MUSCLE's styles);
 *   pkset_add(pages, keys)
 *                         int64 keys into a PkSet's pages (graph.PkSet.add_each);
 *   copy_columns(messages, kinds)
 *                         the messages of PostgreSQL's binary COPY as one list per column
 *                         (sources/muscle_db_copy.py);
 *   shift_offsets(group, delta)
 *                         a Parquet footer's RowGroup (Thrift compact bytes) with every
 *                         file offset moved by delta, like tabular.parquet_file.
 *
 * Anything the kernel is not sure to treat exactly as Python does (NaN, numbers that
 * overflow a double, lone surrogates, duplicate keys inside json_data, invalid UTF-8)
 * raises ValueError; the engine then reads that chunk with the Python reference reading.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* -- growable byte buffer ------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (!data) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int buf_byte(Buf *b, char c) {
    if (b->len >= b->cap && buf_reserve(b, 1) < 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

static void buf_free(Buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* -- the scanner -------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *start, *p, *end;
    Buf str;  /* a decoded string */
    Buf out;  /* a cell or a JSON text being written */
    Buf keys; /* keys of the objects being written (duplicate checks) */
} Scan;

/* Deeper JSON is refused here, so that the Python reference reading, which refuses a
 * json_data nested more than 252 levels (jsonstream.MAX_NESTING), judges it: below that
 * limit, so that the kernel never accepts what the reference refuses. */
#define MAX_NESTING 200
/* jsonstream.MAX_INT_DIGITS: the longest integer Python reads */
#define MAX_INT_DIGITS 4300

static int fail(Scan *s, const char *what) {
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "%s at byte %zd", what, (Py_ssize_t)(s->p - s->start));
    return -1;
}

static inline void skip_ws(Scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static int hex4(Scan *s, unsigned *out) {
    if (s->end - s->p < 4) return fail(s, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s->p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return fail(s, "bad \\u escape");
        v = v * 16 + d;
    }
    s->p += 4;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (not ASCII), 0 if invalid (overlong forms and
 * surrogates included, as Python's strict decoder rejects them). */
static Py_ssize_t utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p >= 2 && (p[1] & 0xC0) == 0x80) return 2;
        return 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;
        if (c == 0xED && p[1] >= 0xA0) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;
        if (c == 0xF4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

static int put_code_point(Buf *b, unsigned cp) {
    char u[4];
    Py_ssize_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_put(b, u, n);
}

/* The first byte at or after p that ends a run of plain ASCII in a string: a quote, a
 * backslash, a control character or a non-ASCII byte (end if none). */
static inline const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* signed: below 0x20 is a control character or a byte of 0x80 and above */
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                                   _mm_cmplt_epi8(v, space));
        int mask = _mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80) p++;
    return p;
}

/* The first quote or backslash at or after p (end if none). */
static inline const unsigned char *quote_or_slash(const unsigned char *p, const unsigned char *end) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        int mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)));
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\') p++;
    return p;
}

/* Decode the string at s->p (on its opening quote) into s->str, as UTF-8. */
static int read_string(Scan *s) {
    s->str.len = 0;
    s->p++;
    for (;;) {
        const unsigned char *run = s->p;
        s->p = plain_run(s->p, s->end);
        if (s->p > run && buf_put(&s->str, (const char *)run, s->p - run) < 0) return -1;
        if (s->p >= s->end) return fail(s, "unterminated string");
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20) return fail(s, "control character in a string");
        if (c >= 0x80) {
            Py_ssize_t n = utf8_len(s->p, s->end);
            if (!n) return fail(s, "invalid UTF-8");
            if (buf_put(&s->str, (const char *)s->p, n) < 0) return -1;
            s->p += n;
            continue;
        }
        /* a backslash */
        s->p++;
        if (s->p >= s->end) return fail(s, "unterminated string");
        c = *s->p++;
        char e;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        case 'u': {
            unsigned cp;
            if (hex4(s, &cp) < 0) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
                    return fail(s, "a lone surrogate");
                s->p += 2;
                if (hex4(s, &lo) < 0) return -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return fail(s, "a lone surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail(s, "a lone surrogate");
            }
            if (put_code_point(&s->str, cp) < 0) return -1;
            continue;
        }
        default:
            return fail(s, "bad escape");
        }
        if (buf_byte(&s->str, e) < 0) return -1;
    }
}

/* A number token at s->p: its extent, and whether it is an integer. */
static int read_number(Scan *s, const unsigned char **tok, Py_ssize_t *len, int *is_int) {
    const unsigned char *p = s->p, *end = s->end;
    *tok = p;
    *is_int = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return fail(s, "bad number");
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        const unsigned char *first = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        /* an integer Python cannot read (jsonstream.MAX_INT_DIGITS) is left to the
         * source's reference reading, which refuses it */
        if (p - first > MAX_INT_DIGITS) return fail(s, "an integer too long");
    } else {
        return fail(s, "bad value");
    }
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return fail(s, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return fail(s, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    *len = p - *tok;
    s->p = p;
    return 0;
}

/* _floats.cpp */
int aek_parse_double(const char *first, const char *last, double *out);
int aek_repr_double(double v, char *out);

static int token_double(Scan *s, const unsigned char *tok, Py_ssize_t len, double *out) {
    /* 1e400 (Python: inf, which its JSON writer spells Infinity) and 1e-400 (0.0) are
     * left to the Python reference reading */
    if (aek_parse_double((const char *)tok, (const char *)tok + len, out) < 0 || !isfinite(*out))
        return fail(s, "a number beyond a double");
    return 0;
}

/* Write float v as Python's repr does. */
static int put_repr(Buf *b, double v) {
    char text[48];
    int n = aek_repr_double(v, text);
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "cannot write a double");
        return -1;
    }
    return buf_put(b, text, n);
}

/* After an element of an object or array: 1 when another follows (the comma consumed), 0
 * at the closing bracket (consumed), -1 on anything else. */
static int next_item(Scan *s, unsigned char close) {
    skip_ws(s);
    if (s->p < s->end) {
        if (*s->p == ',') {
            s->p++;
            return 1;
        }
        if (*s->p == close) {
            s->p++;
            return 0;
        }
    }
    return fail(s, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

static int literal(Scan *s, const char *word, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, word, n) != 0) return fail(s, "bad value");
    s->p += n;
    return 0;
}

/* -- parse_fixture ------------------------------------------------------------------------ */

static PyObject *build_value(Scan *s, int depth, int in_fields);

static PyObject *string_object(Scan *s) {
    if (read_string(s) < 0) return NULL;
    return PyUnicode_DecodeUTF8(s->str.data ? s->str.data : "", s->str.len, "strict");
}

static int skip_value(Scan *s);

static int skip_string(Scan *s) {
    s->p++;
    for (;;) {
        s->p = quote_or_slash(s->p, s->end);
        if (s->p >= s->end) return fail(s, "unterminated string");
        if (*s->p == '"') {
            s->p++;
            return 0;
        }
        s->p += 2;
    }
}

/* The first string or bracket character at or after p (end if none). */
static inline const unsigned char *structural(const unsigned char *p, const unsigned char *end) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), open1 = _mm_set1_epi8('{');
    const __m128i close1 = _mm_set1_epi8('}'), open2 = _mm_set1_epi8('[');
    const __m128i close2 = _mm_set1_epi8(']');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, open1)),
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, close1), _mm_cmpeq_epi8(v, open2)),
                         _mm_cmpeq_epi8(v, close2)));
        int mask = _mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '{' && *p != '}' && *p != '[' && *p != ']') p++;
    return p;
}

/* Find the end of one value: strings and brackets only (flatten checks the syntax when it
 * parses the value; a wrong end on bad input makes that parse, or the element's, fail). */
static int skip_value(Scan *s) {
    skip_ws(s);
    if (s->p >= s->end) return fail(s, "truncated value");
    unsigned c = *s->p;
    if (c == '"') return skip_string(s);
    if (c == '{' || c == '[') {
        int level = 0;
        for (;;) {
            s->p = structural(s->p, s->end);
            if (s->p >= s->end) return fail(s, "unterminated value");
            c = *s->p;
            if (c == '"') {
                if (skip_string(s) < 0) return -1;
                continue;
            }
            s->p++;
            if (c == '{' || c == '[') {
                if (++level > 512) return fail(s, "nesting too deep");
            } else if (--level == 0) {
                return 0;
            }
        }
    }
    while (s->p < s->end && !(*s->p == ',' || *s->p == '}' || *s->p == ']' || *s->p == ' ' ||
                              *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
    return 0;
}

static PyObject *build_number(Scan *s) {
    const unsigned char *tok;
    Py_ssize_t len;
    int is_int;
    if (read_number(s, &tok, &len, &is_int) < 0) return NULL;
    if (is_int) {
        if (len <= 18) {
            long long v = 0;
            Py_ssize_t i = tok[0] == '-';
            for (; i < len; i++) v = v * 10 + (tok[i] - '0');
            return PyLong_FromLongLong(tok[0] == '-' ? -v : v);
        }
        char *text = PyMem_Malloc(len + 1);
        if (!text) return PyErr_NoMemory();
        memcpy(text, tok, len);
        text[len] = 0;
        PyObject *v = PyLong_FromString(text, NULL, 10);
        PyMem_Free(text);
        return v;
    }
    double v;
    if (token_double(s, tok, len, &v) < 0) return NULL;
    return PyFloat_FromDouble(v);
}

/* Keys of the fixture objects repeat on every element: keep their str objects. */
#define KEY_CACHE 32
static PyObject *key_cache[KEY_CACHE];

static PyObject *key_object(Scan *s) {
    if (read_string(s) < 0) return NULL;
    const char *d = s->str.data ? s->str.data : "";
    Py_ssize_t n = s->str.len;
    for (int i = 0; i < KEY_CACHE && key_cache[i]; i++) {
        Py_ssize_t kn;
        const char *k = PyUnicode_AsUTF8AndSize(key_cache[i], &kn);
        if (k && kn == n && memcmp(k, d, n) == 0) {
            Py_INCREF(key_cache[i]);
            return key_cache[i];
        }
    }
    PyObject *key = PyUnicode_DecodeUTF8(d, n, "strict");
    if (!key) return NULL;
    for (int i = 0; i < KEY_CACHE; i++) {
        if (!key_cache[i]) {
            if (n <= 32) {
                Py_INCREF(key);
                key_cache[i] = key;
            }
            break;
        }
    }
    return key;
}

static PyObject *build_value(Scan *s, int depth, int in_fields) {
    if (depth > MAX_NESTING) {
        fail(s, "nesting too deep");
        return NULL;
    }
    skip_ws(s);
    if (s->p >= s->end) {
        fail(s, "truncated value");
        return NULL;
    }
    unsigned c = *s->p;
    if (c == '"') return string_object(s);
    if (c == '{') {
        s->p++;
        PyObject *d = PyDict_New();
        if (!d) return NULL;
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return d;
        }
        for (;;) {
            skip_ws(s);
            if (s->p >= s->end || *s->p != '"') {
                fail(s, "expected a key");
                goto bad;
            }
            PyObject *key = key_object(s);
            if (!key) goto bad;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':') {
                Py_DECREF(key);
                fail(s, "expected ':'");
                goto bad;
            }
            s->p++;
            PyObject *value;
            if (in_fields && PyUnicode_CompareWithASCIIString(key, "json_data") == 0) {
                skip_ws(s);
                const unsigned char *from = s->p;
                if (skip_value(s) < 0) {
                    Py_DECREF(key);
                    goto bad;
                }
                value = PyBytes_FromStringAndSize((const char *)from, s->p - from);
            } else {
                int fields = depth == 0 && PyUnicode_CompareWithASCIIString(key, "fields") == 0;
                value = build_value(s, depth + 1, fields);
            }
            if (!value) {
                Py_DECREF(key);
                goto bad;
            }
            int rc = PyDict_SetItem(d, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (rc < 0) goto bad;
            int more = next_item(s, '}');
            if (more < 0) goto bad;
            if (!more) return d;
        }
    bad:
        Py_DECREF(d);
        return NULL;
    }
    if (c == '[') {
        s->p++;
        PyObject *l = PyList_New(0);
        if (!l) return NULL;
        skip_ws(s);
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return l;
        }
        for (;;) {
            PyObject *item = build_value(s, depth + 1, 0);
            if (!item || PyList_Append(l, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(l);
                return NULL;
            }
            Py_DECREF(item);
            int more = next_item(s, ']');
            if (more < 0) {
                Py_DECREF(l);
                return NULL;
            }
            if (!more) return l;
        }
    }
    if (c == 't') return literal(s, "true", 4) < 0 ? NULL : Py_NewRef(Py_True);
    if (c == 'f') return literal(s, "false", 5) < 0 ? NULL : Py_NewRef(Py_False);
    if (c == 'n') return literal(s, "null", 4) < 0 ? NULL : Py_NewRef(Py_None);
    return build_number(s);
}

static void scan_init(Scan *s, const char *data, Py_ssize_t len) {
    memset(s, 0, sizeof(*s));
    s->start = s->p = (const unsigned char *)data;
    s->end = s->start + len;
}

static void scan_free(Scan *s) {
    buf_free(&s->str);
    buf_free(&s->out);
    buf_free(&s->keys);
}

static PyObject *parse_fixture(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Scan s;
    scan_init(&s, view.buf, view.len);
    PyObject *items = PyList_New(0);
    if (!items) goto done;
    skip_ws(&s);
    if (s.p < s.end) {
        for (;;) {
            PyObject *item = build_value(&s, 0, 0);
            if (!item || PyList_Append(items, item) < 0) {
                Py_XDECREF(item);
                Py_CLEAR(items);
                goto done;
            }
            Py_DECREF(item);
            skip_ws(&s);
            if (s.p >= s.end) break;
            if (*s.p != ',') {
                fail(&s, "expected ',' between elements");
                Py_CLEAR(items);
                goto done;
            }
            s.p++;
        }
    }
done:
    scan_free(&s);
    PyBuffer_Release(&view);
    return items;
}

/* One fixture element into the columns: exactly the keys model ("result.result"), pk and
 * fields, fields exactly the given names (json_data kept as its text). Any other shape is
 * refused, and the engine reads such a chunk with the Python reference reading. */
typedef struct {
    const char *text[64];
    Py_ssize_t len[64];
    Py_ssize_t count, json_data;
} Names;

static int element_columns(Scan *s, const Names *names, PyObject *pks, PyObject *columns) {
    Py_ssize_t count = names->count;
    int have_model = 0, have_fields = 0;
    PyObject *pk = NULL;
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{') return fail(s, "an element that is not an object");
    s->p++;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') goto bad_key;
        if (read_string(s) < 0) goto error;
        const char *k = s->str.data ? s->str.data : "";
        Py_ssize_t kn = s->str.len;
        int which = (kn == 5 && !memcmp(k, "model", 5)) ? 0
                    : (kn == 2 && !memcmp(k, "pk", 2))  ? 1
                    : (kn == 6 && !memcmp(k, "fields", 6)) ? 2
                                                           : -1;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') goto bad_key;
        s->p++;
        skip_ws(s);
        if (which == 0) {
            if (have_model++ || s->p >= s->end || *s->p != '"' || read_string(s) < 0 ||
                s->str.len != 13 || memcmp(s->str.data, "result.result", 13) != 0) {
                fail(s, "an object that is not a result.result");
                goto error;
            }
        } else if (which == 1) {
            if (pk) goto bad_key;
            pk = build_value(s, 1, 0);
            if (!pk) goto error;
        } else if (which == 2) {
            if (have_fields++ || s->p >= s->end || *s->p != '{') goto bad_key;
            s->p++;
            uint64_t seen = 0;
            Py_ssize_t hint = 0;
            for (;;) {
                skip_ws(s);
                if (s->p >= s->end || *s->p != '"') goto bad_key;
                if (read_string(s) < 0) goto error;
                Py_ssize_t j = -1;
                for (Py_ssize_t t = 0; t < count; t++) {
                    Py_ssize_t i = (hint + t) % count;
                    if (names->len[i] == s->str.len &&
                        memcmp(names->text[i], s->str.data, s->str.len) == 0) {
                        j = i;
                        break;
                    }
                }
                if (j < 0 || (seen >> j) & 1) goto bad_key;
                seen |= (uint64_t)1 << j;
                hint = j + 1;
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':') goto bad_key;
                s->p++;
                skip_ws(s);
                PyObject *value;
                if (j == names->json_data) {
                    const unsigned char *from = s->p;
                    if (skip_value(s) < 0) goto error;
                    value = PyBytes_FromStringAndSize((const char *)from, s->p - from);
                } else {
                    value = build_value(s, 2, 0);
                }
                if (!value) goto error;
                int rc = PyList_Append(PyTuple_GET_ITEM(columns, j), value);
                Py_DECREF(value);
                if (rc < 0) goto error;
                int more = next_item(s, '}');
                if (more < 0) goto error;
                if (!more) break;
            }
            if (seen != (count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1))) goto bad_key;
        } else {
            goto bad_key;
        }
        int more = next_item(s, '}');
        if (more < 0) goto error;
        if (!more) break;
    }
    if (!have_model || !have_fields || !pk) goto bad_key;
    if (PyList_Append(pks, pk) < 0) goto error;
    Py_DECREF(pk);
    return 0;
bad_key:
    fail(s, "an object with other keys than a MUSCLE result's");
error:
    Py_XDECREF(pk);
    return -1;
}

static PyObject *parse_columns(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *names;
    if (!PyArg_ParseTuple(args, "y*O!", &view, &PyTuple_Type, &names)) return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(names);
    PyObject *pks = NULL, *columns = NULL, *result = NULL;
    Scan s;
    scan_init(&s, view.buf, view.len);
    if (count > 64) {
        PyErr_SetString(PyExc_ValueError, "too many field names");
        goto done;
    }
    Names known = {.count = count, .json_data = -1};
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *name = PyTuple_GET_ITEM(names, j);
        known.text[j] = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &known.len[j]) : NULL;
        if (!known.text[j]) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "field names must be str");
            goto done;
        }
        if (strcmp(known.text[j], "json_data") == 0) known.json_data = j;
    }
    pks = PyList_New(0);
    columns = PyTuple_New(count);
    if (!pks || !columns) goto done;
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *col = PyList_New(0);
        if (!col) goto done;
        PyTuple_SET_ITEM(columns, j, col);
    }
    skip_ws(&s);
    if (s.p < s.end) {
        for (;;) {
            if (element_columns(&s, &known, pks, columns) < 0) goto done;
            skip_ws(&s);
            if (s.p >= s.end) break;
            if (*s.p != ',') {
                fail(&s, "expected ',' between elements");
                goto done;
            }
            s.p++;
        }
    }
    result = PyTuple_Pack(2, pks, columns);
done:
    Py_XDECREF(pks);
    Py_XDECREF(columns);
    scan_free(&s);
    PyBuffer_Release(&view);
    return result;
}

/* -- flatten ------------------------------------------------------------------------------ */

enum {
    T_STR = 1,
    T_INT = 2,
    T_BIGINT = 4,
    T_FLOAT = 8,
    T_BOOL = 16,
    T_NONE = 32,
    T_LIST = 64,
    T_DICT = 128,
    T_ABSENT = 256, /* not a value's type: some rows lack the path */
};

typedef struct Node {
    char *key; /* decoded UTF-8 key (NULL for a list index) */
    Py_ssize_t klen;
    Py_ssize_t index;
    PyObject *path; /* tuple */
    int plain;      /* the key needs no escape in JSON: its raw text is the key itself */
    struct Node **kids;
    Py_ssize_t nkids, cap, last;
    PyObject *cells; /* list of n cells, or NULL */
    int types;
    Py_ssize_t seen;
    Py_ssize_t present; /* rows with a leaf here (json_data has no duplicate keys) */
    /* the last cell made here and what it was made from (the source token or the decoded
     * string): values repeat row after row, and a hit costs a memcmp */
    PyObject *last_cell;
    char *last_src;
    Py_ssize_t last_len, last_cap;
    int last_type;
} Node;

typedef struct {
    Scan s;
    Py_ssize_t n, row;
    int max_depth, index_lists;
    int json_cells;  /* every leaf as its JSON text (docs/flattening.md), null as "null" */
    PyObject *null_; /* the cell of a JSON null: "" or "null" */
    PyObject *empty; /* "" */
    PyObject *quoted_empty, *true_, *false_;
    Node *root;
} Flat;

static Node *node_new(PyObject *path) {
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (!node) {
        PyErr_NoMemory();
        return NULL;
    }
    node->path = path;
    node->seen = -1;
    node->index = -1;
    return node;
}

static void node_free(Node *node) {
    if (!node) return;
    for (Py_ssize_t i = 0; i < node->nkids; i++) node_free(node->kids[i]);
    PyMem_Free(node->kids);
    PyMem_Free(node->key);
    Py_XDECREF(node->path);
    Py_XDECREF(node->cells);
    Py_XDECREF(node->last_cell);
    PyMem_Free(node->last_src);
    PyMem_Free(node);
}

/* The child of a key given as its raw JSON text without escapes, or NULL (no such child,
 * or one whose text would differ): only keys known to be valid match. */
static Node *node_plain(Node *node, const unsigned char *key, Py_ssize_t klen) {
    Py_ssize_t n = node->nkids;
    for (Py_ssize_t t = 0; t < n; t++) {
        Py_ssize_t i = node->last + 1 + t;
        if (i >= n) i -= n;
        Node *kid = node->kids[i];
        if (kid->plain && kid->klen == klen && memcmp(kid->key, key, klen) == 0) {
            node->last = i;
            return kid;
        }
    }
    return NULL;
}

/* The raw text between the quotes of the string at s->p, unchecked; *escaped tells whether
 * it holds a backslash. s->p stays on the opening quote. */
static int raw_string(Scan *s, const unsigned char **from, Py_ssize_t *len, int *escaped) {
    const unsigned char *p = s->p + 1, *start = p;
    *escaped = 0;
    for (;;) {
        p = quote_or_slash(p, s->end);
        if (p >= s->end) return fail(s, "unterminated string");
        if (*p == '"') break;
        *escaped = 1;
        p += 2;
    }
    *from = start;
    *len = p - start;
    return 0;
}

static Node *node_child(Node *node, const char *key, Py_ssize_t klen, Py_ssize_t index) {
    Py_ssize_t n = node->nkids;
    /* keys come in the same order row after row: try the one after the last found */
    for (Py_ssize_t t = 0; t < n; t++) {
        Py_ssize_t i = node->last + 1 + t;
        if (i >= n) i -= n;
        Node *kid = node->kids[i];
        if (key ? (kid->key && kid->klen == klen && memcmp(kid->key, key, klen) == 0)
                : (!kid->key && kid->index == index)) {
            node->last = i;
            return kid;
        }
    }
    PyObject *part = key ? PyUnicode_DecodeUTF8(key, klen, "strict") : PyLong_FromSsize_t(index);
    if (!part) return NULL;
    Py_ssize_t depth = PyTuple_GET_SIZE(node->path);
    PyObject *path = PyTuple_New(depth + 1);
    if (!path) {
        Py_DECREF(part);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < depth; i++) {
        PyObject *p = PyTuple_GET_ITEM(node->path, i);
        Py_INCREF(p);
        PyTuple_SET_ITEM(path, i, p);
    }
    PyTuple_SET_ITEM(path, depth, part);
    Node *kid = node_new(path);
    if (!kid) {
        Py_DECREF(path);
        return NULL;
    }
    if (key) {
        kid->key = PyMem_Malloc(klen ? klen : 1);
        if (!kid->key) {
            node_free(kid);
            PyErr_NoMemory();
            return NULL;
        }
        memcpy(kid->key, key, klen);
        kid->klen = klen;
        kid->plain = 1;
        for (Py_ssize_t i = 0; i < klen; i++)
            if ((unsigned char)key[i] < 0x20 || key[i] == '"' || key[i] == '\\') kid->plain = 0;
    } else {
        kid->index = index;
    }
    if (node->nkids == node->cap) {
        Py_ssize_t cap = node->cap ? node->cap * 2 : 4;
        Node **kids = PyMem_Realloc(node->kids, cap * sizeof(Node *));
        if (!kids) {
            node_free(kid);
            PyErr_NoMemory();
            return NULL;
        }
        node->kids = kids;
        node->cap = cap;
    }
    node->kids[node->nkids] = kid;
    node->last = node->nkids++;
    return kid;
}

/* Whether a cell of this text needs quotes (our CSV: ',', '"', CR, LF). */
static int needs_quotes(const char *d, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = d[i];
        if (c == ',' || c == '"' || c == '\r' || c == '\n') return 1;
    }
    return 0;
}

/* Put a cell (a new reference) in row f->row of the node's column. */
static int put_cell(Flat *f, Node *node, PyObject *cell, int type) {
    if (!cell) return -1;
    if (!node->cells) {
        node->cells = PyList_New(f->n);
        if (!node->cells) {
            Py_DECREF(cell);
            return -1;
        }
        for (Py_ssize_t i = 0; i < f->n; i++) {
            Py_INCREF(f->empty);
            PyList_SET_ITEM(node->cells, i, f->empty);
        }
    }
    node->types |= type;
    node->present++;
    PyObject *old = PyList_GET_ITEM(node->cells, f->row);
    PyList_SET_ITEM(node->cells, f->row, cell);
    Py_DECREF(old);
    return 0;
}

/* Reuse the node's last cell if it was made from the same source bytes. */
static int cache_hit(Flat *f, Node *node, int type, const char *src, Py_ssize_t len) {
    if (!node->last_cell || node->last_type != type || node->last_len != len ||
        memcmp(node->last_src, src, len) != 0)
        return 0;
    Py_INCREF(node->last_cell);
    return put_cell(f, node, node->last_cell, type) < 0 ? -1 : 1;
}

static int cache_store(Node *node, int type, const char *src, Py_ssize_t len, PyObject *cell) {
    if (len > 256) return 0; /* long texts rarely repeat */
    if (len > node->last_cap) {
        char *buf = PyMem_Realloc(node->last_src, len ? len : 1);
        if (!buf) {
            PyErr_NoMemory();
            return -1;
        }
        node->last_src = buf;
        node->last_cap = len;
    }
    memcpy(node->last_src, src, len);
    node->last_len = len;
    node->last_type = type;
    Py_INCREF(cell);
    Py_XSETREF(node->last_cell, cell);
    return 0;
}

/* A cell of this UTF-8 text, quoted as our CSV needs when quote is set. */
static PyObject *make_cell(Flat *f, const char *d, Py_ssize_t n, int quote) {
    if (!quote || (n > 0 && !needs_quotes(d, n))) return PyUnicode_DecodeUTF8(d, n, "strict");
    if (n == 0) return Py_NewRef(f->quoted_empty);
    Buf q = {0};
    int rc = buf_byte(&q, '"');
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        if (d[i] == '"') rc = buf_byte(&q, '"');
        if (rc == 0) rc = buf_byte(&q, d[i]);
    }
    if (rc == 0) rc = buf_byte(&q, '"');
    PyObject *cell = rc == 0 ? PyUnicode_DecodeUTF8(q.data, q.len, "strict") : NULL;
    buf_free(&q);
    return cell;
}

/* A new cell made from text d (with quoting), remembered as the cell of source bytes src
 * (the caller found no cached one). */
static int new_leaf(Flat *f, Node *node, int type, const char *src, Py_ssize_t slen,
                    const char *d, Py_ssize_t n, int quote) {
    PyObject *cell = make_cell(f, d, n, quote);
    if (!cell || cache_store(node, type, src, slen, cell) < 0) {
        Py_XDECREF(cell);
        return -1;
    }
    return put_cell(f, node, cell, type);
}

/* The cell of source bytes src: from the node's cache, else a new one. */
static int leaf(Flat *f, Node *node, int type, const char *src, Py_ssize_t slen, const char *d,
                Py_ssize_t n, int quote) {
    int hit = cache_hit(f, node, type, src, slen);
    if (hit) return hit < 0 ? -1 : 0;
    return new_leaf(f, node, type, src, slen, d, n, quote);
}

/* Integer token: its type (int within 2**53, BigInt beyond), as Python's int would be. */
static int int_type(const unsigned char *tok, Py_ssize_t len) {
    Py_ssize_t digits = len - (tok[0] == '-');
    const unsigned char *d = tok + (tok[0] == '-');
    if (digits < 16) return T_INT;
    if (digits > 16) return T_BIGINT;
    return memcmp(d, "9007199254740992", 16) <= 0 ? T_INT : T_BIGINT;
}

/* Append a string to out as Python's json.dumps(ensure_ascii=False) writes it. */
static int emit_string(Buf *out, const char *d, Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    if (buf_byte(out, '"') < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        const char *esc = NULL;
        char u[6];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\';
                u[1] = 'u';
                u[2] = '0';
                u[3] = '0';
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                if (buf_put(out, u, 6) < 0) return -1;
                continue;
            }
        }
        if (esc) {
            if (buf_put(out, esc, (Py_ssize_t)strlen(esc)) < 0) return -1;
        } else if (buf_byte(out, (char)c) < 0) {
            return -1;
        }
    }
    return buf_byte(out, '"');
}

/* Parse one value and append it to s->out as Python's compact JSON text
 * (separators "," and ":", raw UTF-8, floats by repr). Duplicate keys are refused:
 * Python keeps only the last one, the text would keep both. */
static int emit_value(Scan *s, int depth) {
    if (depth > MAX_NESTING) return fail(s, "nesting too deep");
    skip_ws(s);
    if (s->p >= s->end) return fail(s, "truncated value");
    unsigned c = *s->p;
    Buf *out = &s->out;
    if (c == '"') {
        if (read_string(s) < 0) return -1;
        return emit_string(out, s->str.data ? s->str.data : "", s->str.len);
    }
    if (c == '{') {
        s->p++;
        if (buf_byte(out, '{') < 0) return -1;
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return buf_byte(out, '}');
        }
        /* this object's keys, each as (length, bytes), from keys_from on */
        Py_ssize_t keys_from = s->keys.len;
        int first = 1;
        for (;;) {
            skip_ws(s);
            if (s->p >= s->end || *s->p != '"') return fail(s, "expected a key");
            if (read_string(s) < 0) return -1;
            const char *k = s->str.data ? s->str.data : "";
            Py_ssize_t kn = s->str.len;
            for (Py_ssize_t at = keys_from; at < s->keys.len;) {
                Py_ssize_t len;
                memcpy(&len, s->keys.data + at, sizeof(len));
                at += sizeof(len);
                if (len == kn && memcmp(s->keys.data + at, k, kn) == 0)
                    return fail(s, "a duplicate key in json_data");
                at += len;
            }
            if (buf_put(&s->keys, (const char *)&kn, sizeof(kn)) < 0) return -1;
            if (buf_put(&s->keys, k, kn) < 0) return -1;
            if (!first && buf_byte(out, ',') < 0) return -1;
            first = 0;
            if (emit_string(out, s->keys.data + s->keys.len - kn, kn) < 0) return -1;
            if (buf_byte(out, ':') < 0) return -1;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':') return fail(s, "expected ':'");
            s->p++;
            if (emit_value(s, depth + 1) < 0) return -1;
            int more = next_item(s, '}');
            if (more < 0) return -1;
            if (!more) {
                s->keys.len = keys_from;
                return buf_byte(out, '}');
            }
        }
    }
    if (c == '[') {
        s->p++;
        if (buf_byte(out, '[') < 0) return -1;
        skip_ws(s);
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return buf_byte(out, ']');
        }
        for (int first = 1;; first = 0) {
            if (!first && buf_byte(out, ',') < 0) return -1;
            if (emit_value(s, depth + 1) < 0) return -1;
            int more = next_item(s, ']');
            if (more < 0) return -1;
            if (!more) return buf_byte(out, ']');
        }
    }
    if (c == 't') return literal(s, "true", 4) < 0 ? -1 : buf_put(out, "true", 4);
    if (c == 'f') return literal(s, "false", 5) < 0 ? -1 : buf_put(out, "false", 5);
    if (c == 'n') return literal(s, "null", 4) < 0 ? -1 : buf_put(out, "null", 4);
    const unsigned char *tok;
    Py_ssize_t len;
    int is_int;
    if (read_number(s, &tok, &len, &is_int) < 0) return -1;
    if (is_int) {
        if (len == 2 && tok[0] == '-' && tok[1] == '0') return buf_byte(out, '0');
        return buf_put(out, (const char *)tok, len);
    }
    double v;
    if (token_double(s, tok, len, &v) < 0) return -1;
    return put_repr(out, v);
}

/* The whole value at s->p as one cell: its compact JSON text, quoted. */
static int json_leaf(Flat *f, Node *node, int type) {
    Scan *s = &f->s;
    const unsigned char *from = s->p;
    if (skip_value(s) < 0) return -1;
    /* the same source text as the last time here: it was checked then */
    int hit = cache_hit(f, node, type, (const char *)from, s->p - from);
    if (hit) return hit < 0 ? -1 : 0;
    const unsigned char *to = s->p;
    s->p = from;
    s->out.len = 0;
    if (emit_value(s, 0) < 0) return -1;
    if (s->p != to) return fail(s, "bad value");
    return new_leaf(f, node, type, (const char *)from, to - from, s->out.data ? s->out.data : "",
                s->out.len, 1);
}

static int walk(Flat *f, Node *node, int depth) {
    Scan *s = &f->s;
    if (depth > MAX_NESTING) return fail(s, "nesting too deep");
    if (node->seen == f->row) return fail(s, "a duplicate key in json_data");
    node->seen = f->row;
    skip_ws(s);
    if (s->p >= s->end) return fail(s, "truncated value");
    unsigned c = *s->p;
    if (f->max_depth >= 0 && depth >= f->max_depth) {
        int type = c == '{' ? T_DICT : c == '[' ? T_LIST : 0;
        if (type) return json_leaf(f, node, type);
    } else if (c == '{') {
        const unsigned char *at = s->p;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') {
            s->p = at;
            return json_leaf(f, node, T_DICT);
        }
        for (;;) {
            skip_ws(s);
            if (s->p >= s->end || *s->p != '"') return fail(s, "expected a key");
            const unsigned char *raw;
            Py_ssize_t raw_len;
            int escaped;
            if (raw_string(s, &raw, &raw_len, &escaped) < 0) return -1;
            /* a key seen before, byte for byte: no decoding, no checks */
            Node *kid = escaped ? NULL : node_plain(node, raw, raw_len);
            if (kid) {
                s->p = raw + raw_len + 1;
            } else {
                if (read_string(s) < 0) return -1;
                kid = node_child(node, s->str.data ? s->str.data : "", s->str.len, -1);
                if (!kid) return -1;
            }
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':') return fail(s, "expected ':'");
            s->p++;
            if (walk(f, kid, depth + 1) < 0) return -1;
            int more = next_item(s, '}');
            if (more < 0) return -1;
            if (!more) return 0;
        }
    } else if (c == '[') {
        const unsigned char *at = s->p;
        s->p++;
        skip_ws(s);
        if (!f->index_lists || (s->p < s->end && *s->p == ']')) {
            s->p = at;
            return json_leaf(f, node, T_LIST);
        }
        for (Py_ssize_t i = 0;; i++) {
            Node *kid = node_child(node, NULL, 0, i);
            if (!kid) return -1;
            if (walk(f, kid, depth + 1) < 0) return -1;
            int more = next_item(s, ']');
            if (more < 0) return -1;
            if (!more) return 0;
        }
    }
    /* a scalar leaf */
    if (c == '"') {
        /* the cache holds the raw text: the same bytes as a string checked before */
        const unsigned char *raw;
        Py_ssize_t raw_len;
        int escaped;
        if (raw_string(s, &raw, &raw_len, &escaped) < 0) return -1;
        int hit = cache_hit(f, node, T_STR, (const char *)raw, raw_len);
        if (hit) {
            s->p = raw + raw_len + 1;
            return hit < 0 ? -1 : 0;
        }
        if (read_string(s) < 0) return -1;
        const char *d = s->str.data ? s->str.data : "";
        if (f->json_cells) {
            s->out.len = 0;
            if (emit_string(&s->out, d, s->str.len) < 0) return -1;
            return new_leaf(f, node, T_STR, (const char *)raw, raw_len, s->out.data, s->out.len,
                            1);
        }
        return new_leaf(f, node, T_STR, (const char *)raw, raw_len, d, s->str.len, 1);
    }
    if (c == 't')
        return literal(s, "true", 4) < 0 ? -1 : put_cell(f, node, Py_NewRef(f->true_), T_BOOL);
    if (c == 'f')
        return literal(s, "false", 5) < 0 ? -1 : put_cell(f, node, Py_NewRef(f->false_), T_BOOL);
    if (c == 'n')
        return literal(s, "null", 4) < 0 ? -1 : put_cell(f, node, Py_NewRef(f->null_), T_NONE);
    const unsigned char *tok;
    Py_ssize_t len;
    int is_int;
    if (read_number(s, &tok, &len, &is_int) < 0) return -1;
    if (is_int) {
        const char *t = (const char *)tok;
        if (len == 2 && tok[0] == '-' && tok[1] == '0') return leaf(f, node, T_INT, t, 2, "0", 1, 0);
        return leaf(f, node, int_type(tok, len), t, len, t, len, 0);
    }
    int hit = cache_hit(f, node, T_FLOAT, (const char *)tok, len);
    if (hit) return hit < 0 ? -1 : 0;
    double v;
    if (token_double(s, tok, len, &v) < 0) return -1;
    s->out.len = 0;
    if (put_repr(&s->out, v) < 0) return -1;
    return new_leaf(f, node, T_FLOAT, (const char *)tok, len, s->out.data, s->out.len, 0);
}

static int collect(Node *node, PyObject *result, Py_ssize_t n) {
    if (node->cells) {
        int types = node->types | (node->present < n ? T_ABSENT : 0);
        PyObject *entry = Py_BuildValue("(Oi)", node->cells, types);
        if (!entry) return -1;
        int rc = PyDict_SetItem(result, node->path, entry);
        Py_DECREF(entry);
        if (rc < 0) return -1;
    }
    for (Py_ssize_t i = 0; i < node->nkids; i++)
        if (collect(node->kids[i], result, n) < 0) return -1;
    return 0;
}

static PyObject *flatten(PyObject *self, PyObject *args) {
    PyObject *docs;
    int max_depth, index_lists, json_cells = 0;
    if (!PyArg_ParseTuple(args, "O!ip|p", &PyList_Type, &docs, &max_depth, &index_lists,
                          &json_cells))
        return NULL;
    Flat f;
    memset(&f, 0, sizeof(f));
    f.n = PyList_GET_SIZE(docs);
    f.max_depth = max_depth;
    f.index_lists = index_lists;
    f.json_cells = json_cells;
    PyObject *result = NULL;
    f.empty = PyUnicode_FromStringAndSize("", 0);
    f.quoted_empty = PyUnicode_FromString("\"\"");
    f.true_ = PyUnicode_FromString("true");
    f.false_ = PyUnicode_FromString("false");
    f.null_ = json_cells ? PyUnicode_FromString("null") : Py_XNewRef(f.empty);
    PyObject *root_path = PyTuple_New(0);
    if (!f.empty || !f.quoted_empty || !f.true_ || !f.false_ || !f.null_ || !root_path) {
        Py_XDECREF(root_path);
        goto done;
    }
    f.root = node_new(root_path);
    if (!f.root) {
        Py_DECREF(root_path);
        goto done;
    }
    for (f.row = 0; f.row < f.n; f.row++) {
        PyObject *doc = PyList_GET_ITEM(docs, f.row);
        if (!PyBytes_Check(doc)) {
            PyErr_SetString(PyExc_TypeError, "flatten() takes a list of bytes");
            goto done;
        }
        Buf keep_str = f.s.str, keep_out = f.s.out, keep_keys = f.s.keys;
        f.s.start = f.s.p = (const unsigned char *)PyBytes_AS_STRING(doc);
        f.s.end = f.s.start + PyBytes_GET_SIZE(doc);
        f.s.str = keep_str;
        f.s.out = keep_out;
        f.s.keys = keep_keys;
        int rc = walk(&f, f.root, 0);
        if (rc == 0) {
            skip_ws(&f.s);
            if (f.s.p != f.s.end) rc = fail(&f.s, "text after the value");
        }
        if (rc < 0) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_Format(PyExc_ValueError, "row %zd: %S", f.row, value);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            }
            goto done;
        }
    }
    result = PyDict_New();
    if (result && collect(f.root, result, f.n) < 0) Py_CLEAR(result);
done:
    node_free(f.root);
    scan_free(&f.s);
    Py_XDECREF(f.empty);
    Py_XDECREF(f.quoted_empty);
    Py_XDECREF(f.true_);
    Py_XDECREF(f.false_);
    Py_XDECREF(f.null_);
    return result;
}

/* -- join_rows ---------------------------------------------------------------------------- */

/* A cell's UTF-8 text (pure-ASCII strs, nearly all of them, without a call). */
static inline const char *cell_text(PyObject *cell, Py_ssize_t *len) {
    if (PyUnicode_CheckExact(cell) && PyUnicode_IS_COMPACT_ASCII(cell)) {
        *len = PyUnicode_GET_LENGTH(cell);
        return (const char *)PyUnicode_DATA(cell);
    }
    if (!PyUnicode_Check(cell)) {
        PyErr_SetString(PyExc_TypeError, "a cell that is not a str");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(cell, len);
}

static PyObject *join_rows(PyObject *self, PyObject *args) {
    PyObject *parts;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &parts, &n)) return NULL;
    Py_ssize_t width = PyList_GET_SIZE(parts);
    /* the exact size first: one allocation, then plain copies */
    Py_ssize_t total = n * (width ? width + 1 : 2);
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *col = PyList_GET_ITEM(parts, j);
        if (!PyList_Check(col) || PyList_GET_SIZE(col) != n) {
            PyErr_Format(PyExc_ValueError, "column %zd is not a list of %zd cells", j, n);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t len;
            if (!cell_text(PyList_GET_ITEM(col, i), &len)) return NULL;
            total += len;
        }
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (!result) return NULL;
    char *o = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t j = 0; j < width; j++) {
            Py_ssize_t len;
            const char *text = cell_text(PyList_GET_ITEM(PyList_GET_ITEM(parts, j), i), &len);
            if (j) *o++ = ',';
            memcpy(o, text, len);
            o += len;
        }
        *o++ = '\r';
        *o++ = '\n';
    }
    return result;
}

/* -- utc_texts -------------------------------------------------------------------------------- */

/* Datetimes in UTC (tzinfo datetime.timezone.utc) as datetime.isoformat(timespec=
 * "microseconds") writes them; None (the return) for anything else. */
static PyObject *utc_texts(PyObject *self, PyObject *values) {
    PyObject *seq = PySequence_Fast(values, "utc_texts() takes a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *result = PyList_New(n);
    if (!result) {
        Py_DECREF(seq);
        return NULL;
    }
    char out[40];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = items[i];
        if (!PyDateTime_CheckExact(d) || !_PyDateTime_HAS_TZINFO(d) ||
            PyDateTime_DATE_GET_TZINFO(d) != PyDateTime_TimeZone_UTC) {
            Py_DECREF(result);
            Py_DECREF(seq);
            Py_RETURN_NONE;
        }
        int len = snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00",
                           PyDateTime_GET_YEAR(d), PyDateTime_GET_MONTH(d), PyDateTime_GET_DAY(d),
                           PyDateTime_DATE_GET_HOUR(d), PyDateTime_DATE_GET_MINUTE(d),
                           PyDateTime_DATE_GET_SECOND(d), PyDateTime_DATE_GET_MICROSECOND(d));
        PyObject *text = PyUnicode_FromStringAndSize(out, len);
        if (!text) {
            Py_DECREF(result);
            Py_DECREF(seq);
            return NULL;
        }
        PyList_SET_ITEM(result, i, text);
    }
    Py_DECREF(seq);
    return result;
}

/* -- str_cells ------------------------------------------------------------------------------ */

static PyObject *quote_str(PyObject *v) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    int kind = PyUnicode_KIND(v);
    const void *data = PyUnicode_DATA(v);
    int special = 0;
    for (Py_ssize_t i = 0; i < n && !special; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        special = c == ',' || c == '"' || c == '\r' || c == '\n';
    }
    if (!special) return Py_NewRef(v);
    PyObject *quote = PyUnicode_FromString("\""), *twice = PyUnicode_FromString("\"\"");
    PyObject *inner = quote && twice ? PyUnicode_Replace(v, quote, twice, -1) : NULL;
    PyObject *cell = inner ? PyUnicode_FromFormat("\"%U\"", inner) : NULL;
    Py_XDECREF(quote);
    Py_XDECREF(twice);
    Py_XDECREF(inner);
    return cell;
}

/* Cells of a column of strings and None, as our CSV writes them: None empty, "" as "",
 * quotes where a comma, quote, CR or LF needs them; None (the return) if another type. */
static PyObject *str_cells(PyObject *self, PyObject *values) {
    if (!PyList_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "str_cells() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *result = PyList_New(n), *empty = PyUnicode_FromString("");
    PyObject *quoted_empty = PyUnicode_FromString("\"\"");
    if (!result || !empty || !quoted_empty) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i), *cell;
        if (v == Py_None) {
            cell = Py_NewRef(empty);
        } else if (!PyUnicode_CheckExact(v)) {
            Py_DECREF(result);
            Py_DECREF(empty);
            Py_DECREF(quoted_empty);
            Py_RETURN_NONE;
        } else if (PyUnicode_GET_LENGTH(v) == 0) {
            cell = Py_NewRef(quoted_empty);
        } else if (PyUnicode_IS_COMPACT_ASCII(v) &&
                   !needs_quotes(PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v))) {
            cell = Py_NewRef(v);
        } else {
            cell = quote_str(v);
            if (!cell) goto fail;
        }
        PyList_SET_ITEM(result, i, cell);
    }
    Py_DECREF(empty);
    Py_DECREF(quoted_empty);
    return result;
fail:
    Py_XDECREF(result);
    Py_XDECREF(empty);
    Py_XDECREF(quoted_empty);
    return NULL;
}

/* -- created_texts ------------------------------------------------------------------------ */

static int digits(const char *d, int from, int count, int *out) {
    int v = 0;
    for (int i = from; i < from + count; i++) {
        if (d[i] < '0' || d[i] > '9') return -1;
        v = v * 10 + (d[i] - '0');
    }
    *out = v;
    return 0;
}

/* Django's "2024-07-22T10:26:50.911Z" (or without milliseconds) as our CSV writes it,
 * "2024-07-22T10:26:50.911000+00:00"; 0 if the text is not exactly that form of a real
 * instant. */
static int created_text(const char *d, Py_ssize_t len, char *out) {
    int year, month, day, hour, minute, second, ms;
    if (len != 20 && len != 24) return 0;
    if (d[4] != '-' || d[7] != '-' || d[10] != 'T' || d[13] != ':' || d[16] != ':' ||
        d[len - 1] != 'Z')
        return 0;
    if (digits(d, 0, 4, &year) || digits(d, 5, 2, &month) || digits(d, 8, 2, &day) ||
        digits(d, 11, 2, &hour) || digits(d, 14, 2, &minute) || digits(d, 17, 2, &second))
        return 0;
    if (len == 24 && (d[19] != '.' || digits(d, 20, 3, &ms))) return 0;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
        return 0;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > days[month - 1] + (month == 2 && leap)) return 0;
    memcpy(out, d, 19);
    out[19] = '.';
    if (len == 24) {
        memcpy(out + 20, d + 20, 3);
        memcpy(out + 23, "000", 3);
    } else {
        memcpy(out + 20, "000000", 6);
    }
    memcpy(out + 26, "+00:00", 6);
    return 1;
}

static PyObject *created_texts(PyObject *self, PyObject *values) {
    if (!PyList_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "created_texts() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *result = PyList_New(n);
    if (!result) return NULL;
    char out[32];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_COMPACT_ASCII(v) ||
            !created_text(PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v), out)) {
            Py_DECREF(result);
            Py_RETURN_NONE; /* the Python code decides (and names the problem) */
        }
        PyObject *text = PyUnicode_FromStringAndSize(out, 32);
        if (!text) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, text);
    }
    return result;
}

/* Add native int64 keys to a PkSet's pages ({page number: bytearray of 8192 bytes}, a bit
 * per key), in order, as PkSet.add_each does one key at a time. Returns the index of the
 * first key it did not add: one already there, or a negative key (those live in a Python
 * set; the caller goes on from there); -1 when every key was added. */
#define PK_PAGE_BITS 16
#define PK_PAGE_BYTES ((1 << PK_PAGE_BITS) >> 3)

static PyObject *pkset_add(PyObject *self, PyObject *args) {
    PyObject *pages;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "O!y*", &PyDict_Type, &pages, &view)) return NULL;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(int64_t), stop = -1;
    const char *data = view.buf;
    int64_t page_no = -1;
    unsigned char *bits = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t key;
        memcpy(&key, data + i * (Py_ssize_t)sizeof(int64_t), sizeof(key));
        if (key < 0) {
            stop = i;
            break;
        }
        int64_t number = key >> PK_PAGE_BITS;
        if (number != page_no) {
            PyObject *pn = PyLong_FromLongLong(number);
            if (!pn) goto bad;
            PyObject *page = PyDict_GetItemWithError(pages, pn); /* borrowed */
            if (!page) {
                if (PyErr_Occurred()) {
                    Py_DECREF(pn);
                    goto bad;
                }
                page = PyByteArray_FromStringAndSize(NULL, PK_PAGE_BYTES);
                if (!page) {
                    Py_DECREF(pn);
                    goto bad;
                }
                memset(PyByteArray_AS_STRING(page), 0, PK_PAGE_BYTES);
                int rc = PyDict_SetItem(pages, pn, page);
                Py_DECREF(page); /* the dict holds it */
                if (rc < 0) {
                    Py_DECREF(pn);
                    goto bad;
                }
            } else if (!PyByteArray_Check(page) || PyByteArray_GET_SIZE(page) != PK_PAGE_BYTES) {
                Py_DECREF(pn);
                PyErr_SetString(PyExc_TypeError, "a page is not a bytearray of 8192 bytes");
                goto bad;
            }
            Py_DECREF(pn);
            bits = (unsigned char *)PyByteArray_AS_STRING(page);
            page_no = number;
        }
        unsigned bit = (unsigned)(key & ((1 << PK_PAGE_BITS) - 1));
        unsigned char mask = (unsigned char)(1u << (bit & 7));
        if (bits[bit >> 3] & mask) {
            stop = i;
            break;
        }
        bits[bit >> 3] |= mask;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(stop);
bad:
    PyBuffer_Release(&view);
    return NULL;
}

/* -- copy_columns --------------------------------------------------------------------- */

/* The Python reference is sources/muscle_db_copy.py (copy_columns_reference). */

static const char COPY_SIGNATURE[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\xff', '\r', '\n', 0};

static inline int64_t be_int(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~(uint64_t)0 << (8 * n); /* sign */
    return (int64_t)v;
}

/* Days since 1970-01-01 as a proleptic Gregorian date (the usual era arithmetic). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* A timestamptz (microseconds since 2000-01-01 UTC) as isoformat(timespec="microseconds")
 * writes it in UTC; NULL without an error for a year outside 2..9998. */
static PyObject *timestamp_text(int64_t us) {
    const int64_t day_us = 86400000000LL;
    if (us < -400000000000000000LL || us > 400000000000000000LL)
        return NULL; /* (±12,000 years: beyond the years kept; the arithmetic stays in range) */
    int64_t days = us / day_us, rem = us % day_us;
    if (rem < 0) {
        rem += day_us;
        days--;
    }
    int64_t year;
    int month, day;
    civil_from_days(days + 10957, &year, &month, &day);
    if (year < 2 || year > 9998) return NULL;
    int64_t secs = rem / 1000000;
    char out[40];
    int len = snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00", (int)year,
                       month, day, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
                       (int)(rem % 1000000));
    return PyUnicode_FromStringAndSize(out, len);
}

/* One field of kind k as a Python value; NULL with no error set: not one taken. */
static PyObject *copy_value(char k, const unsigned char *p, int32_t size) {
    switch (k) {
    case 'i':
        if (size != 2 && size != 4 && size != 8) return NULL;
        return PyLong_FromLongLong(be_int(p, size));
    case 'f': {
        if (size != 8) return NULL;
        uint64_t bits = (uint64_t)be_int(p, 8);
        double v;
        memcpy(&v, &bits, 8);
        return PyFloat_FromDouble(v);
    }
    case 't': {
        PyObject *text = PyUnicode_DecodeUTF8((const char *)p, size, NULL);
        if (!text && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
        return text;
    }
    case 'b':
        return PyBytes_FromStringAndSize((const char *)p, size);
    case 'z':
        if (size != 8) return NULL;
        return timestamp_text(be_int(p, 8));
    }
    return NULL;
}

/* A column's last few short values (an integer, a float, a text), by their bytes: most
 * values of a chunk repeat (the session, the question key, the scoring rule), and taking
 * the object made for the same bytes saves making one per row. */
#define COPY_SLOTS 4
#define COPY_SLOT_BYTES 32
typedef struct {
    PyObject *value;
    int32_t size;
    unsigned char raw[COPY_SLOT_BYTES];
} CopySlot;

static void copy_slots_free(CopySlot *slots, Py_ssize_t nk, int *turn) {
    if (slots) {
        for (Py_ssize_t i = 0; i < nk * COPY_SLOTS; i++) Py_XDECREF(slots[i].value);
        PyMem_Free(slots);
    }
    PyMem_Free(turn);
}

/* copy_columns(messages, kinds) -> list of lists | None: the messages of a binary COPY
 * (header to trailer, whole tuples in each) as one list per column. */
static PyObject *copy_columns(PyObject *self, PyObject *args) {
    PyObject *messages;
    const char *kinds;
    Py_ssize_t nk;
    if (!PyArg_ParseTuple(args, "Os#", &messages, &kinds, &nk)) return NULL;
    for (Py_ssize_t k = 0; k < nk; k++) {
        if (!strchr("iftbz", kinds[k]) || !kinds[k]) {
            PyErr_Format(PyExc_ValueError, "copy_columns: no kind %c", kinds[k]);
            return NULL;
        }
    }
    PyObject *seq = PySequence_Fast(messages, "copy_columns() takes a sequence");
    if (!seq) return NULL;
    PyObject *columns = PyList_New(nk);
    CopySlot *slots = PyMem_Calloc(nk * COPY_SLOTS + 1, sizeof(CopySlot));
    int *turn = PyMem_Calloc(nk + 1, sizeof(int));
    if (!columns || !slots || !turn) goto fail;
    for (Py_ssize_t k = 0; k < nk; k++) {
        PyObject *column = PyList_New(0);
        if (!column) goto fail;
        PyList_SET_ITEM(columns, k, column);
    }
    PyObject *const *items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    int ended = 0;
    for (Py_ssize_t index = 0; index < count; index++) {
        Py_buffer view;
        if (PyObject_GetBuffer(items[index], &view, PyBUF_SIMPLE) < 0) goto fail;
        const unsigned char *data = view.buf;
        Py_ssize_t len = view.len, pos = 0;
        int ok = len > 0;
        if (ok && index == 0) {
            ok = len >= 19 && memcmp(data, COPY_SIGNATURE, 11) == 0;
            int64_t extension = ok ? be_int(data + 15, 4) : -1;
            ok = ok && extension >= 0;
            pos = ok ? 19 + (Py_ssize_t)extension : 0;
        }
        while (ok && pos < len) {
            if (ended || pos + 2 > len) {
                ok = 0;
                break;
            }
            int64_t fields = be_int(data + pos, 2);
            pos += 2;
            if (fields == -1) {
                ended = 1;
                continue;
            }
            if (fields != nk) {
                ok = 0;
                break;
            }
            for (Py_ssize_t k = 0; k < nk && ok; k++) {
                if (pos + 4 > len) {
                    ok = 0;
                    break;
                }
                int32_t size = (int32_t)be_int(data + pos, 4);
                pos += 4;
                PyObject *value;
                if (size == -1) {
                    value = Py_NewRef(Py_None);
                } else if (size < 0 || size > len - pos) {
                    ok = 0;
                    break;
                } else {
                    int cached = size <= COPY_SLOT_BYTES && kinds[k] != 'b' && kinds[k] != 'z';
                    CopySlot *slot = slots + k * COPY_SLOTS;
                    value = NULL;
                    for (int j = 0; cached && j < COPY_SLOTS; j++) {
                        if (slot[j].value && slot[j].size == size &&
                            memcmp(slot[j].raw, data + pos, size) == 0) {
                            value = Py_NewRef(slot[j].value);
                            break;
                        }
                    }
                    if (!value) {
                        value = copy_value(kinds[k], data + pos, size);
                        if (value && cached) {
                            CopySlot *put = slot + turn[k];
                            turn[k] = (turn[k] + 1) % COPY_SLOTS;
                            Py_XSETREF(put->value, Py_NewRef(value));
                            put->size = size;
                            memcpy(put->raw, data + pos, size);
                        }
                    }
                    pos += size;
                    if (!value) {
                        if (PyErr_Occurred()) {
                            PyBuffer_Release(&view);
                            goto fail;
                        }
                        ok = 0;
                        break;
                    }
                }
                int added = PyList_Append(PyList_GET_ITEM(columns, k), value);
                Py_DECREF(value);
                if (added < 0) {
                    PyBuffer_Release(&view);
                    goto fail;
                }
            }
        }
        PyBuffer_Release(&view);
        if (!ok || pos != len) goto refuse;
    }
    if (!ended) goto refuse;
    copy_slots_free(slots, nk, turn);
    Py_DECREF(seq);
    return columns;
refuse:
    copy_slots_free(slots, nk, turn);
    Py_DECREF(seq);
    Py_DECREF(columns);
    Py_RETURN_NONE;
fail:
    copy_slots_free(slots, nk, turn);
    Py_DECREF(seq);
    Py_XDECREF(columns);
    return NULL;
}

/* -- Parquet footers: a row group's file offsets shifted --------------------------------- */

/* A walk over Thrift compact protocol bytes (a Parquet RowGroup), copying them to out with
 * every file offset (an i64 field of the ids below, when positive) plus delta. */
typedef struct {
    const unsigned char *p, *end, *copied;
    Buf *out;
    int64_t delta;
} Walk;

enum { LEVEL_NONE = -1, LEVEL_GROUP, LEVEL_CHUNK, LEVEL_META };
/* Nesting deeper than this (lists, maps and structs) is refused; Parquet's has 4 levels. */
#define MAX_DEPTH 64

static int walk_varint(Walk *w, uint64_t *value) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && w->p < w->end; shift += 7) {
        unsigned char b = *w->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *value = v;
            return 0;
        }
    }
    return -1;
}

static int walk_struct(Walk *w, int level, int depth);

static int walk_value(Walk *w, int kind, int level, int depth) {
    uint64_t n;
    if (depth > MAX_DEPTH) return -1;
    switch (kind) {
    case 1: case 2: return 0; /* a field's bool is in its header */
    case 3: if (w->p >= w->end) return -1; w->p++; return 0;
    case 4: case 5: case 6: return walk_varint(w, &n);
    case 7: if (w->end - w->p < 8) return -1; w->p += 8; return 0;
    case 8:
        if (walk_varint(w, &n) < 0 || (uint64_t)(w->end - w->p) < n) return -1;
        w->p += n;
        return 0;
    case 9: case 10: {
        if (w->p >= w->end) return -1;
        unsigned char head = *w->p++;
        uint64_t count = head >> 4;
        int element = head & 0x0F;
        if (count == 15 && walk_varint(w, &count) < 0) return -1;
        if (element == 1 || element == 2) element = 3; /* list bools are bytes */
        for (uint64_t i = 0; i < count; i++)
            if (walk_value(w, element, level, depth + 1) < 0) return -1;
        return 0;
    }
    case 11: {
        if (walk_varint(w, &n) < 0) return -1;
        if (!n) return 0;
        if (w->p >= w->end) return -1;
        int key = *w->p >> 4, value = *w->p & 0x0F;
        w->p++;
        if (key == 1 || key == 2) key = 3;
        if (value == 1 || value == 2) value = 3;
        for (uint64_t i = 0; i < n; i++)
            if (walk_value(w, key, LEVEL_NONE, depth + 1) < 0 ||
                walk_value(w, value, LEVEL_NONE, depth + 1) < 0)
                return -1;
        return 0;
    }
    case 12: return walk_struct(w, level, depth + 1);
    }
    return -1;
}

static int is_offset(int level, int64_t field) {
    switch (level) {
    case LEVEL_GROUP: return field == 5;                          /* RowGroup.file_offset */
    case LEVEL_CHUNK: return field == 2 || field == 4 || field == 6; /* file, both indexes */
    case LEVEL_META:  /* data, index and dictionary pages, bloom filter */
        return field == 9 || field == 10 || field == 11 || field == 14;
    }
    return 0;
}

static int nested(int level, int64_t field) {
    if (level == LEVEL_GROUP && field == 1) return LEVEL_CHUNK;   /* columns */
    if (level == LEVEL_CHUNK && field == 3) return LEVEL_META;    /* meta_data */
    return LEVEL_NONE;
}

static int walk_struct(Walk *w, int level, int depth) {
    if (depth > MAX_DEPTH) return -1;
    int64_t field = 0;
    for (;;) {
        if (w->p >= w->end) return -1;
        unsigned char head = *w->p++;
        if (!head) return 0;
        int kind = head & 0x0F;
        if (head >> 4) {
            field += head >> 4;
        } else {
            uint64_t z;
            if (walk_varint(w, &z) < 0) return -1;
            field = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        }
        if (kind == 6 && is_offset(level, field)) {
            const unsigned char *start = w->p;
            uint64_t z;
            if (walk_varint(w, &z) < 0) return -1;
            int64_t v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            if (v > 0) {
                unsigned char tmp[10];
                int len = 0;
                uint64_t u = (uint64_t)v + (uint64_t)w->delta; /* wraps like Python's */
                u = (u << 1) ^ (uint64_t)((int64_t)u >> 63);
                while (u >= 0x80) {
                    tmp[len++] = (unsigned char)(u & 0x7F) | 0x80;
                    u >>= 7;
                }
                tmp[len++] = (unsigned char)u;
                if (buf_put(w->out, (const char *)w->copied, start - w->copied) < 0 ||
                    buf_put(w->out, (const char *)tmp, len) < 0)
                    return -2;
                w->copied = w->p;
            }
        } else if (walk_value(w, kind, nested(level, field), depth) < 0) {
            return -1;
        }
    }
}

static PyObject *shift_offsets(PyObject *self, PyObject *args) {
    Py_buffer view;
    long long delta;
    if (!PyArg_ParseTuple(args, "y*L", &view, &delta)) return NULL;
    Buf out = {NULL, 0, 0};
    Walk w = {view.buf, (const unsigned char *)view.buf + view.len, view.buf, &out, delta};
    int status = walk_struct(&w, LEVEL_GROUP, 0);
    PyObject *result = NULL;
    if (status == -1) {
        PyErr_SetString(PyExc_ValueError, "not a Parquet row group (Thrift compact)");
    } else if (status == 0) {
        if (buf_put(&out, (const char *)w.copied, w.p - w.copied) == 0) {
            if (w.p != w.end)
                PyErr_SetString(PyExc_ValueError, "bytes after the Parquet row group");
            else
                result = PyBytes_FromStringAndSize(out.data, out.len);
        }
    }
    PyMem_Free(out.data);
    PyBuffer_Release(&view);
    return result;
}

/* -- csv_quote ------------------------------------------------------------------------------ */

/* Each string as Python's csv writer (QUOTE_MINIMAL, '"' doubled) writes it in a row of two
 * or more cells: quoted when it holds one of the characters of `specials` (the delimiter,
 * the quote and the line end's characters, as engine/muscle.py finds them by asking the
 * writer), else the string itself. The writer stays the reference (tests/native). */
static PyObject *csv_quote(PyObject *self, PyObject *args) {
    PyObject *values, *specials;
    if (!PyArg_ParseTuple(args, "O!U:csv_quote", &PyList_Type, &values, &specials)) return NULL;
    unsigned char table[128] = {0};
    Py_ssize_t ns = PyUnicode_GET_LENGTH(specials);
    for (Py_ssize_t i = 0; i < ns; i++) {
        Py_UCS4 c = PyUnicode_READ_CHAR(specials, i);
        if (c >= 128) {
            PyErr_SetString(PyExc_ValueError, "csv_quote() takes ASCII specials");
            return NULL;
        }
        table[c] = 1;
    }
    if (!table['"']) {
        PyErr_SetString(PyExc_ValueError, "csv_quote(): the quote must be special");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *result = PyList_New(n);
    if (!result) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i), *cell;
        if (!PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "csv_quote() takes a list of str");
            Py_DECREF(result);
            return NULL;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(v), quotes = 0;
        int kind = PyUnicode_KIND(v), special = 0;
        const void *data = PyUnicode_DATA(v);
        if (kind == PyUnicode_1BYTE_KIND) {
            const unsigned char *d = data;
            for (Py_ssize_t j = 0; j < len; j++) {
                unsigned char c = d[j];
                if (c < 128 && table[c]) {
                    special = 1;
                    quotes += c == '"';
                }
            }
        } else {
            for (Py_ssize_t j = 0; j < len; j++) {
                Py_UCS4 c = PyUnicode_READ(kind, data, j);
                if (c < 128 && table[c]) {
                    special = 1;
                    quotes += c == '"';
                }
            }
        }
        if (!special) {
            cell = Py_NewRef(v);
        } else {
            cell = PyUnicode_New(len + 2 + quotes, PyUnicode_MAX_CHAR_VALUE(v));
            if (!cell) {
                Py_DECREF(result);
                return NULL;
            }
            int okind = PyUnicode_KIND(cell);
            void *out = PyUnicode_DATA(cell);
            Py_ssize_t at = 0;
            PyUnicode_WRITE(okind, out, at++, '"');
            for (Py_ssize_t j = 0; j < len; j++) {
                Py_UCS4 c = PyUnicode_READ(kind, data, j);
                if (c == '"') PyUnicode_WRITE(okind, out, at++, '"');
                PyUnicode_WRITE(okind, out, at++, c);
            }
            PyUnicode_WRITE(okind, out, at++, '"');
        }
        PyList_SET_ITEM(result, i, cell);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"parse_fixture", parse_fixture, METH_O,
     "parse_fixture(body) -> list: the elements of '[body]'; fields.json_data as raw bytes."},
    {"parse_columns", parse_columns, METH_VARARGS,
     "parse_columns(body, names) -> (pks, columns): MUSCLE results as columns of fields."},
    {"flatten", flatten, METH_VARARGS,
     "flatten(docs, max_depth, index_lists) -> {path: (cells, types)}: JSON texts flattened."},
    {"utc_texts", utc_texts, METH_O,
     "utc_texts(values) -> list | None: UTC datetimes as isoformat(timespec='microseconds')."},
    {"str_cells", str_cells, METH_O,
     "str_cells(values) -> list | None: cells of a column of strings and None."},
    {"created_texts", created_texts, METH_O,
     "created_texts(values) -> list | None: Django's UTC timestamps as our CSV writes them."},
    {"join_rows", join_rows, METH_VARARGS,
     "join_rows(parts, n) -> bytes: columns of cells as CSV lines (CRLF), UTF-8."},
    {"csv_quote", csv_quote, METH_VARARGS,
     "csv_quote(values, specials) -> list: strings as Python's csv writer writes a cell."},
    {"pkset_add", pkset_add, METH_VARARGS,
     "pkset_add(pages, keys) -> int: int64 keys into a PkSet's pages; where it stopped, or -1."},
    {"copy_columns", copy_columns, METH_VARARGS,
     "copy_columns(messages, kinds) -> list | None: a binary COPY's messages as columns."},
    {"shift_offsets", shift_offsets, METH_VARARGS,
     "shift_offsets(group, delta) -> bytes: a Parquet row group with its offsets + delta."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "The engine's native kernel.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI) return NULL;
    return PyModule_Create(&module);
}
