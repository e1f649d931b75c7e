/* analyze._spanjson: JSON lines of spans (blameset's flat JSONL, the Collector's OTLP JSON) decoded
 * straight into columns, handed to polars through the Arrow C data interface.
 *
 * Why native: the row reader (Python) costs ~60 us a span and DuckDB's JSON reader, the fastest
 * engine found, ~21 us of CPU a span for OTLP JSON (it parses every line into its own vectors,
 * then re-encodes the attributes as JSON text). This reads each byte once, keeps the text it can
 * keep as it is (attribute values, the flat format's objects), and writes the columns the fast
 * path's polars stage (analyze.fast.table_from_raw) takes. It releases the GIL, so ingest runs
 * one decode per core.
 *
 * It never guesses: a chunk holding anything it does not read exactly as the row reader does
 * (invalid JSON or UTF-8, escapes in member names, an id of another size, a value of an odd type,
 * members in an unusual order, duplicated members) is refused as a whole with a short reason, and
 * the caller reads it another way. The property tests hold both paths to the same rows.
 *
 * The span kind and status mappings and the id sizes are not written here: set_rules() hands
 * them over once from their one declaration (analyze.columns), and the tests hold this decoder's
 * reading of every kind and status to the row reader's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* --- the Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html) --- */

#define ARROW_FLAG_NULLABLE 2

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* --- growable buffers and columns ------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int buf_grow(Buf *b, size_t extra) __attribute__((noinline));

/* The check is inlined everywhere; growing, which is rare, is not. */
static inline int buf_reserve(Buf *b, size_t extra) {
    return b->len + extra <= b->cap ? 1 : buf_grow(b, extra);
}

static int buf_grow(Buf *b, size_t extra) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) return 0;
    b->data = data;
    b->cap = cap;
    return 1;
}

static inline int buf_put(Buf *b, const char *s, size_t n) {
    if (n == 0) return 1;
    if (!buf_reserve(b, n)) return 0;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 1;
}

static inline int buf_putc(Buf *b, char c) {
    if (!buf_reserve(b, 1)) return 0;
    b->data[b->len++] = c;
    return 1;
}

/* A nullable UTF-8 column (Arrow "u": int32 offsets, a validity bitmap). */
typedef struct {
    Buf data;
    Buf offsets; /* int32 */
    Buf valid;   /* one bit a row */
    int64_t rows, nulls;
} StrCol;

static int col_init(StrCol *c) {
    memset(c, 0, sizeof *c);
    int32_t zero = 0;
    return buf_put(&c->offsets, (const char *)&zero, sizeof zero);
}

static void col_free(StrCol *c) {
    free(c->data.data);
    free(c->offsets.data);
    free(c->valid.data);
    memset(c, 0, sizeof *c);
}

static inline int col_mark(StrCol *c, int ok) {
    if ((c->rows & 7) == 0 && !buf_putc(&c->valid, 0)) return 0;
    if (ok)
        c->valid.data[c->rows >> 3] |= (char)(1 << (c->rows & 7));
    else
        c->nulls++;
    c->rows++;
    if (c->data.len > INT32_MAX) return 0;
    int32_t end = (int32_t)c->data.len;
    return buf_put(&c->offsets, (const char *)&end, sizeof end);
}

static inline int col_add(StrCol *c, const char *s, size_t n) {
    return buf_put(&c->data, s, n) && col_mark(c, 1);
}

static inline int col_null(StrCol *c) { return col_mark(c, 0); }

/* --- the key sets: which attribute and resource keys get a column of their own -------------- */

#define MAX_KEYS 128
#define HASH_SLOTS 512

typedef struct {
    int n;
    const char *name[MAX_KEYS];
    size_t len[MAX_KEYS];
    int16_t slot[HASH_SLOTS]; /* key index + 1, 0 = empty */
} KeySet;

/* The length and the first and last 8 bytes, mixed: keys differ there (a full FNV walk over
 * each attribute key was ~0.2 us a span). Collisions only cost a memcmp. */
static uint32_t key_hash(const char *s, size_t n) {
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
    } else {
        memcpy(&a, s, n);
    }
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full) ^ (n * 0x165667B19E3779F9ull);
    return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

static int keys_find(const KeySet *k, const char *s, size_t n) {
    uint32_t h = key_hash(s, n) & (HASH_SLOTS - 1);
    while (k->slot[h]) {
        int i = k->slot[h] - 1;
        if (k->len[i] == n && memcmp(k->name[i], s, n) == 0) return i;
        h = (h + 1) & (HASH_SLOTS - 1);
    }
    return -1;
}

/* --- the rules, handed over once by set_rules() from analyze.columns (their one declaration) --- */

#define MAX_RULES 16
#define MAX_ID_BYTES 32

typedef struct {
    char *s;
    size_t n;
} Name;

typedef struct {
    Name from, to;
} Rename;

static struct {
    int ready;
    Name kind_by_number[MAX_RULES]; /* [0] is also the kind of a span that names none */
    Rename kind_by_name[MAX_RULES];
    Name flat_kinds[MAX_RULES];
    Name status_by_number[MAX_RULES]; /* [0] is also the status of a span that names none */
    Rename status_by_name[MAX_RULES];
    int n_kind_numbers, n_kind_names, n_flat_kinds, n_status_numbers, n_status_names;
    size_t trace_id_bytes, span_id_bytes;
} R;

#define DEFAULT_KIND R.kind_by_number[0]
#define DEFAULT_STATUS R.status_by_number[0]

/* --- the decoder's state ---------------------------------------------------------------------- */

enum { TRACE_ID, SPAN_ID, PARENT_ID, NAME, KIND, START, END, STATUS, MESSAGE, RESOURCE, ATTRS, N_COLS };
static const char *COL_NAMES[N_COLS] = {
    "trace_id", "span_id", "parent_span_id", "name", "kind", "start_text", "end_text",
    "status", "status_message", "resource", "attributes",
};

typedef struct {
    size_t off, len;
    int set;
} Slot;

typedef struct {
    const char *p, *end, *line_start;
    size_t escapes; /* strings with an escape seen so far */
    const char *why; /* why the chunk was refused; NULL while all is well */
    const KeySet *akeys, *rkeys;
    StrCol cols[N_COLS];
    StrCol *acols, *rcols;
    int64_t rows;
    Slot aslot[MAX_KEYS], rslot[MAX_KEYS];
    Buf scratch;  /* one OTLP value's JSON text */
    Buf resource; /* the current OTLP resource's JSON text */
    Buf text;     /* an unescaped string */
    Buf junk;     /* what is validated, not kept (event attributes) */
    int nest;     /* arrays and maps the current attribute value is inside */
} Dec;

static int refuse(Dec *d, const char *why) {
    if (!d->why) d->why = why;
    return 0;
}

#define REFUSE(d, reason) return refuse((d), (reason))

static const char *OOM = "out of memory";

static int add_name(Dec *d, StrCol *c, const Name *name) {
    return col_add(c, name->s, name->n) ? 1 : refuse(d, OOM);
}

/* --- JSON: validation and skipping, exactly Python's json grammar (minus NaN/Infinity) -------- */

static inline void ws(Dec *d) {
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r')) d->p++;
}

static inline int expect(Dec *d, char c) {
    ws(d);
    if (d->p >= d->end || *d->p != c) REFUSE(d, "unexpected character");
    d->p++;
    return 1;
}

static const signed char HEX[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
    ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
    ['F'] = 16,
}; /* value + 1; 0 = not a hex digit */

static inline int hexval(char c) { return HEX[(unsigned char)c] - 1; }

/* A UTF-8 sequence starting at p (a byte >= 0x80) as Python's strict decoder takes it: its length,
 * or 0 if invalid (overlong, a surrogate, beyond U+10FFFF, cut short). */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && p[1] >= 0x90) return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

/* A string at d->p (at its opening quote): validated and skipped. *s and *n are its content as
 * written (escapes kept); *esc says whether it holds any escape. */
static int string(Dec *d, const char **s, size_t *n, int *esc) {
    ws(d);
    if (d->p >= d->end || *d->p != '"') REFUSE(d, "expected a string");
    const unsigned char *p = (const unsigned char *)d->p + 1, *end = (const unsigned char *)d->end;
    *esc = 0;
    *s = (const char *)p;
    for (;;) {
        /* the usual case: plain ASCII, 8 bytes at a time while none of them is a quote, a
         * backslash, a control character or a byte of a multi-byte character */
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\');
            uint64_t special = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) |
                               (x - ones * 0x20) | x;
            if (special & highs) break;
            p += 8;
        }
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80) p++;
        if (p >= end) REFUSE(d, "unterminated string");
        unsigned c = *p;
        if (c == '"') break;
        if (c < 0x20) REFUSE(d, "control character in a string");
        if (c == '\\') {
            *esc = 1;
            if (end - p < 2) REFUSE(d, "unterminated string");
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6 || hexval(p[2]) < 0 || hexval(p[3]) < 0 || hexval(p[4]) < 0 ||
                    hexval(p[5]) < 0)
                    REFUSE(d, "bad \\u escape");
                p += 6;
                break;
            default:
                REFUSE(d, "bad escape");
            }
            continue;
        }
        int k = utf8_len(p, end);
        if (!k) REFUSE(d, "not UTF-8");
        p += k;
    }
    *n = (size_t)((const char *)p - *s);
    d->p = (const char *)p + 1;
    d->escapes += (size_t)*esc;
    return 1;
}

/* A member name without escapes (a name with one is refused: it may spell a known one). */
static int member_name(Dec *d, const char **s, size_t *n) {
    int esc;
    if (!string(d, s, n, &esc)) return 0;
    if (esc) REFUSE(d, "escape in a member name");
    return expect(d, ':');
}

/* A number: validated and skipped; *is_int when it has no fraction or exponent. */
static int number(Dec *d, const char **s, size_t *n, int *is_int) {
    ws(d);
    const char *p = d->p, *end = d->end;
    *s = p;
    *is_int = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) REFUSE(d, "bad number");
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9') p++;
    else
        REFUSE(d, "bad number");
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') REFUSE(d, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') REFUSE(d, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    *n = (size_t)(p - *s);
    /* Python refuses integers of over 4300 digits, and float() of an integer too large for a
     * double raises: no telemetry number is this long, so refuse rather than follow each rule */
    if (*n > 300) REFUSE(d, "number too long");
    d->p = p;
    return 1;
}

static int literal(Dec *d, const char *word, size_t n) {
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) REFUSE(d, "bad literal");
    d->p += n;
    return 1;
}

static inline char peek(Dec *d) {
    ws(d);
    return d->p < d->end ? *d->p : '\0';
}

/* Whether the next value is null (consumed if so). */
static int take_null(Dec *d) {
    if (peek(d) == 'n') return literal(d, "null", 4) ? 1 : -1;
    return 0;
}

#define MAX_DEPTH 64
/* How deep an attribute value may nest arrays and maps: the row reader's MAX_VALUE_DEPTH
 * (readers.py), which refuses deeper values by name; this steps aside for them. */
#define MAX_VALUE_DEPTH 32

static int skip(Dec *d, int depth) {
    if (depth > MAX_DEPTH) REFUSE(d, "nested too deep");
    const char *s;
    size_t n;
    int flag;
    switch (peek(d)) {
    case '"':
        return string(d, &s, &n, &flag);
    case '{':
        d->p++;
        if (peek(d) == '}') {
            d->p++;
            return 1;
        }
        for (;;) {
            if (!string(d, &s, &n, &flag) || !expect(d, ':') || !skip(d, depth + 1)) return 0;
            char c = peek(d);
            d->p++;
            if (c == '}') return 1;
            if (c != ',') REFUSE(d, "expected , or }");
        }
    case '[':
        d->p++;
        if (peek(d) == ']') {
            d->p++;
            return 1;
        }
        for (;;) {
            if (!skip(d, depth + 1)) return 0;
            char c = peek(d);
            d->p++;
            if (c == ']') return 1;
            if (c != ',') REFUSE(d, "expected , or ]");
        }
    case 't':
        return literal(d, "true", 4);
    case 'f':
        return literal(d, "false", 5);
    case 'n':
        return literal(d, "null", 4);
    default:
        return number(d, &s, &n, &flag);
    }
}

/* A flat attribute value, validated and passed over: refused when it nests more than
 * MAX_VALUE_DEPTH arrays and maps (``inside``: how many it is in already). */
static int skip_value(Dec *d, int inside) {
    const char *s;
    size_t n;
    int flag;
    char open = peek(d);
    if (open != '{' && open != '[') return skip(d, 0);
    if (inside >= MAX_VALUE_DEPTH) REFUSE(d, "attribute value nested too deep");
    char close = open == '{' ? '}' : ']';
    d->p++;
    if (peek(d) == close) {
        d->p++;
        return 1;
    }
    for (;;) {
        if (open == '{' && (!string(d, &s, &n, &flag) || !expect(d, ':'))) return 0;
        if (!skip_value(d, inside + 1)) return 0;
        char c = peek(d);
        d->p++;
        if (c == close) return 1;
        if (c != ',') REFUSE(d, "expected , or the end of a value");
    }
}

/* Object iteration: call obj_open, then obj_next until it returns 0 (end) or -1 (refused). */
static int obj_open(Dec *d) { return expect(d, '{'); }

/* Past the separator before the next member: 1 there is one, 0 the object ended, -1 refused. */
static int obj_step(Dec *d, int *first) {
    char c = peek(d);
    if (c == '}') {
        d->p++;
        return 0;
    }
    if (!*first) {
        if (c != ',') {
            refuse(d, "expected , or }");
            return -1;
        }
        d->p++;
    }
    *first = 0;
    return 1;
}

static int obj_next(Dec *d, int *first, const char **name, size_t *n) {
    int step = obj_step(d, first);
    if (step <= 0) return step;
    return member_name(d, name, n) ? 1 : -1;
}

static int unescape(Dec *d, const char *s, size_t n);

/* obj_next for objects whose member names are data (a flat span's attributes): a name with
 * escapes is given unescaped (in d->text, valid until the next unescape). */
static int obj_next_any(Dec *d, int *first, const char **name, size_t *n) {
    int step = obj_step(d, first);
    if (step <= 0) return step;
    int esc;
    if (!string(d, name, n, &esc) || !expect(d, ':')) return -1;
    if (esc) {
        if (!unescape(d, *name, *n)) return -1;
        *name = d->text.data;
        *n = d->text.len;
    }
    return 1;
}

static int arr_next(Dec *d, int *first) {
    char c = peek(d);
    if (c == ']') {
        d->p++;
        return 0;
    }
    if (!*first) {
        if (c != ',') {
            refuse(d, "expected , or ]");
            return -1;
        }
        d->p++;
    }
    *first = 0;
    return 1;
}

#define IS(name, n, lit) ((n) == sizeof(lit) - 1 && memcmp((name), (lit), (n)) == 0)
#define IS_N(name, n, other, other_n) ((n) == (other_n) && memcmp((name), (other), (n)) == 0)

/* Each known member once: a second one (Python keeps the last) is refused. */
#define ONCE(d, seen, bit)                               \
    do {                                                 \
        if ((seen) & (1u << (bit))) REFUSE(d, "duplicated member"); \
        (seen) |= 1u << (bit);                           \
    } while (0)

/* --- values ----------------------------------------------------------------------------------- */

/* An int64 from digits (optionally signed), written canonically into *out; 0 if not one. */
static int parse_i64(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (i < n && s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || n - i > 19) return 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* An int64 the row reader's int() takes the same way: a JSON integer, or a string of digits.
 * Returns 1 with *has set when there is one (its digits as written in *s, *n), 1 with *has = 0
 * for null or "", 0 if refused. */
static int int64_value(Dec *d, int64_t *v, int *has, const char **s, size_t *n) {
    int flag;
    *has = 0;
    char c = peek(d);
    if (c == 'n') return literal(d, "null", 4);
    if (c == '"') {
        if (!string(d, s, n, &flag)) return 0;
        if (*n == 0) return 1;
        if (flag || !parse_i64(*s, *n, v)) REFUSE(d, "not an int64");
        *has = 1;
        return 1;
    }
    if (c != '-' && (c < '0' || c > '9')) REFUSE(d, "not an int64");
    if (!number(d, s, n, &flag)) return 0;
    if (!flag || !parse_i64(*s, *n, v)) REFUSE(d, "not an int64");
    *has = 1;
    return 1;
}

/* v in decimal, canonically (what Python's int() then json.dumps write); text holds 21. */
static size_t format_i64(int64_t v, char *text) {
    char digits[20];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) text[k++] = '-';
    while (n) text[k++] = digits[--n];
    return k;
}

/* A string unescaped into d->text (UTF-8). Lone surrogates are refused. */
static int unescape(Dec *d, const char *s, size_t n) {
    d->text.len = 0;
    if (!buf_reserve(&d->text, n)) REFUSE(d, OOM);
    const char *end = s + n;
    while (s < end) {
        if (*s != '\\') {
            d->text.data[d->text.len++] = *s++;
            continue;
        }
        char e = s[1];
        s += 2;
        char out;
        switch (e) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        default: { /* 'u', validated by string() */
            uint32_t cp = (uint32_t)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 |
                                     hexval(s[3]));
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u') REFUSE(d, "lone surrogate");
                uint32_t lo = (uint32_t)(hexval(s[2]) << 12 | hexval(s[3]) << 8 |
                                         hexval(s[4]) << 4 | hexval(s[5]));
                if (lo < 0xDC00 || lo > 0xDFFF) REFUSE(d, "lone surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                REFUSE(d, "lone surrogate");
            }
            char *o = d->text.data + d->text.len;
            if (cp < 0x80) {
                o[0] = (char)cp;
                d->text.len += 1;
            } else if (cp < 0x800) {
                o[0] = (char)(0xC0 | cp >> 6);
                o[1] = (char)(0x80 | (cp & 0x3F));
                d->text.len += 2;
            } else if (cp < 0x10000) {
                o[0] = (char)(0xE0 | cp >> 12);
                o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
                o[2] = (char)(0x80 | (cp & 0x3F));
                d->text.len += 3;
            } else {
                o[0] = (char)(0xF0 | cp >> 18);
                o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
                o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
                o[3] = (char)(0x80 | (cp & 0x3F));
                d->text.len += 4;
            }
            continue; /* an escape is never shorter than what it stands for */
        }
        }
        d->text.data[d->text.len++] = out;
    }
    return 1;
}

/* A JSON string (content s, n as written) into JSON text kept for the table (attributes,
 * resource): as written when it has no escape; else unescaped and escaped again only where JSON
 * must (quote, backslash, control characters), so what reads that text as text (the HTML page
 * looks for "blameset.boundary" by regex) sees "client", not "\u0063lient", and a lone
 * surrogate is refused as the row reader's encoder would. */
static int put_string(Dec *d, Buf *out, const char *s, size_t n, int esc) {
    if (!esc) {
        if (!buf_putc(out, '"') || !buf_put(out, s, n) || !buf_putc(out, '"')) REFUSE(d, OOM);
        return 1;
    }
    if (!unescape(d, s, n)) return 0;
    if (!buf_reserve(out, d->text.len * 6 + 2)) REFUSE(d, OOM);
    static const char DIGITS[] = "0123456789abcdef";
    char *o = out->data + out->len;
    *o++ = '"';
    for (size_t i = 0; i < d->text.len; i++) {
        unsigned char c = (unsigned char)d->text.data[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c >= 0x20) {
            *o++ = (char)c;
        } else {
            *o++ = '\\';
            switch (c) {
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = DIGITS[c >> 4];
                *o++ = DIGITS[c & 15];
            }
        }
    }
    *o++ = '"';
    out->len = (size_t)(o - out->data);
    return 1;
}

/* A JSON value rewritten into out: strings as put_string writes them, numbers and literals as
 * written, no whitespace. With keys, the top-level members that are table keys are noted in
 * slots (offsets into out). For a flat span's object that holds an escape. */
static int canon(Dec *d, Buf *out, int depth, const KeySet *keys, Slot *slots) {
    if (depth > MAX_DEPTH) REFUSE(d, "nested too deep");
    const char *s;
    size_t n;
    int esc;
    char c = peek(d);
    if (c == '"') return string(d, &s, &n, &esc) && put_string(d, out, s, n, esc);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        d->p++;
        if (!buf_putc(out, c)) REFUSE(d, OOM);
        int first = 1;
        for (;;) {
            char e = peek(d);
            if (e == close) {
                d->p++;
                break;
            }
            if (!first) {
                if (e != ',') REFUSE(d, "expected , or end");
                d->p++;
                if (!buf_putc(out, ',')) REFUSE(d, OOM);
            }
            first = 0;
            int i = -1;
            if (c == '{') {
                if (!string(d, &s, &n, &esc)) return 0;
                if (keys) {
                    if (esc && !unescape(d, s, n)) return 0;
                    i = esc ? keys_find(keys, d->text.data, d->text.len) : keys_find(keys, s, n);
                }
                if (!put_string(d, out, s, n, esc) || !expect(d, ':') || !buf_putc(out, ':'))
                    return 0;
            }
            size_t at = out->len;
            if (!canon(d, out, depth + 1, NULL, NULL)) return 0;
            if (i >= 0) {
                slots[i].off = at;
                slots[i].len = out->len - at;
                slots[i].set = 1;
            }
        }
        return buf_putc(out, close) ? 1 : refuse(d, OOM);
    }
    const char *at = (ws(d), d->p);
    if (!skip(d, depth)) return 0;
    return buf_put(out, at, (size_t)(d->p - at)) ? 1 : refuse(d, OOM);
}

/* What an empty string reads as in a text column. */
enum { EMPTY_KEEP, EMPTY_NULL, EMPTY_UNSET };

/* A text column's value from a JSON string (unescaped), or null for JSON null when allowed. */
static int text_value(Dec *d, StrCol *c, int null_ok, int empty) {
    int isnull = take_null(d);
    if (isnull < 0) return 0;
    if (isnull) {
        if (!null_ok) REFUSE(d, "null where text is needed");
        return col_null(c) ? 1 : refuse(d, OOM);
    }
    const char *s;
    size_t n;
    int esc;
    if (peek(d) != '"') REFUSE(d, "not a string");
    if (!string(d, &s, &n, &esc)) return 0;
    if (n == 0 && empty == EMPTY_NULL) return col_null(c) ? 1 : refuse(d, OOM);
    if (n == 0 && empty == EMPTY_UNSET) return add_name(d, c, &DEFAULT_STATUS);
    if (esc) {
        if (!unescape(d, s, n)) return 0;
        s = d->text.data;
        n = d->text.len;
    }
    if (!col_add(c, s, n)) REFUSE(d, OOM);
    return 1;
}

/* An OTLP id: 2*size hex digits in any case, or base64 of size bytes; lower-case hex out.
 * null, "" and a missing id are null (*has = 0). */
static const signed char B64[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
    ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
    ['/'] = 64,
}; /* value + 1; 0 = not in the alphabet */

static int id_value(Dec *d, StrCol *c, size_t size, int *has) {
    *has = 0;
    int isnull = take_null(d);
    if (isnull < 0) return 0;
    if (isnull) return col_null(c) ? 1 : refuse(d, OOM);
    const char *s;
    size_t n;
    int esc;
    if (peek(d) != '"') REFUSE(d, "id is not a string");
    if (!string(d, &s, &n, &esc)) return 0;
    if (n == 0) return col_null(c) ? 1 : refuse(d, OOM);
    if (esc) REFUSE(d, "escape in an id");
    char hex[2 * MAX_ID_BYTES];
    static const char DIGITS[] = "0123456789abcdef";
    if (n == size * 2) {
        for (size_t i = 0; i < n; i++) {
            int v = hexval(s[i]);
            if (v < 0) REFUSE(d, "id is not hex");
            hex[i] = DIGITS[v];
        }
    } else {
        /* base64 of size bytes: ceil(8 size / 6) symbols, padded to a multiple of 4 with '='
         * (16 bytes: 22 symbols + "=="; 8 bytes: 11 symbols + "=") */
        size_t symbols = (size * 8 + 5) / 6, pad = (4 - symbols % 4) % 4;
        if (n != symbols + pad) REFUSE(d, "id of another size");
        for (size_t i = symbols; i < n; i++)
            if (s[i] != '=') REFUSE(d, "id of another size");
        uint8_t bytes[MAX_ID_BYTES + 2];
        uint32_t acc = 0;
        int bits = 0;
        size_t out = 0;
        for (size_t i = 0; i < symbols; i++) {
            int v = B64[(unsigned char)s[i]] - 1;
            if (v < 0) REFUSE(d, "id is not base64");
            acc = (acc << 6) | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                bytes[out++] = (uint8_t)(acc >> bits);
                acc &= (1u << bits) - 1;
            }
        }
        if (out != size) REFUSE(d, "id of another size");
        for (size_t i = 0; i < size; i++) {
            hex[2 * i] = DIGITS[bytes[i] >> 4];
            hex[2 * i + 1] = DIGITS[bytes[i] & 15];
        }
    }
    if (!col_add(c, hex, size * 2)) REFUSE(d, OOM);
    *has = 1;
    return 1;
}

/* --- OTLP AnyValue -> the JSON text the row reader's _any_value then json.dumps give --------- */

static int any_value(Dec *d, Buf *out, int depth);

/* OTLP key-values (an array of {"key", "value"}) as one JSON object's text. With slots, the
 * values of known keys (the last one of a key wins, as in a Python dict) are noted. */
static int key_values(Dec *d, Buf *out, int depth, const KeySet *keys, Slot *slots) {
    if (depth > MAX_DEPTH) REFUSE(d, "nested too deep");
    if (!buf_putc(out, '{')) REFUSE(d, OOM);
    int isnull = take_null(d);
    if (isnull < 0) return 0;
    if (!isnull) {
        if (!expect(d, '[')) return 0;
        int first = 1, any = 0, r;
        while ((r = arr_next(d, &first)) == 1) {
            const char *key = NULL, *name;
            size_t key_len = 0, n;
            int first_member = 1, m, esc, key_esc = 0, has_value = 0;
            unsigned seen = 0;
            d->scratch.len = 0;
            if (!obj_open(d)) return 0;
            while ((m = obj_next(d, &first_member, &name, &n)) == 1) {
                if (IS(name, n, "key")) {
                    ONCE(d, seen, 0);
                    if (peek(d) != '"') REFUSE(d, "key is not a string");
                    if (!string(d, &key, &key_len, &esc)) return 0;
                    key_esc = esc;
                } else if (IS(name, n, "value")) {
                    ONCE(d, seen, 1);
                    if (!any_value(d, &d->scratch, depth + 1)) return 0;
                    has_value = 1;
                } else if (!skip(d, depth + 1)) {
                    return 0;
                }
            }
            if (m < 0) return 0;
            if (!key) REFUSE(d, "key-value without a key");
            if (!has_value && !buf_put(&d->scratch, "null", 4)) REFUSE(d, OOM);
            int i = -1;
            if (slots) { /* looked up by its value, escapes undone */
                if (key_esc && !unescape(d, key, key_len)) return 0;
                i = key_esc ? keys_find(keys, d->text.data, d->text.len)
                            : keys_find(keys, key, key_len);
            }
            if ((any && !buf_putc(out, ',')) || !put_string(d, out, key, key_len, key_esc) ||
                !buf_putc(out, ':'))
                return refuse(d, OOM);
            any = 1;
            if (i >= 0) {
                slots[i].off = out->len;
                slots[i].len = d->scratch.len;
                slots[i].set = 1;
            }
            if (!buf_put(out, d->scratch.data, d->scratch.len)) REFUSE(d, OOM);
        }
        if (r < 0) return 0;
    }
    if (!buf_putc(out, '}')) REFUSE(d, OOM);
    return 1;
}

static int any_value(Dec *d, Buf *out, int depth) {
    if (depth > MAX_DEPTH) REFUSE(d, "nested too deep");
    const char *s, *name;
    size_t n;
    int flag;
    char c = peek(d);
    if (c != '{') { /* not an AnyValue object: the row reader reads None */
        if (!skip(d, depth + 1)) return 0;
        return buf_put(out, "null", 4) ? 1 : refuse(d, OOM);
    }
    int first = 1, m;
    if (!obj_open(d)) return 0;
    m = obj_next(d, &first, &name, &n);
    if (m < 0) return 0;
    if (m == 0) return buf_put(out, "null", 4) ? 1 : refuse(d, OOM);
    char v = peek(d);
    if (IS(name, n, "stringValue") || IS(name, n, "bytesValue")) {
        if (v == 'n') {
            if (!literal(d, "null", 4) || !buf_put(out, "null", 4)) return 0;
        } else {
            if (v != '"') REFUSE(d, "string value is not a string");
            if (!string(d, &s, &n, &flag) || !put_string(d, out, s, n, flag)) return 0;
        }
    } else if (IS(name, n, "intValue")) {
        int64_t iv;
        int has;
        const char *digits;
        size_t digits_n;
        if (v == 'n') REFUSE(d, "intValue null");
        if (!int64_value(d, &iv, &has, &digits, &digits_n)) return 0;
        if (!has) REFUSE(d, "intValue empty");
        char text[24];
        if (!buf_put(out, text, format_i64(iv, text))) REFUSE(d, OOM);
    } else if (IS(name, n, "doubleValue")) {
        if (v != '-' && (v < '0' || v > '9')) REFUSE(d, "doubleValue is not a number");
        if (!number(d, &s, &n, &flag)) return 0;
        if (flag && IS(s, n, "-0")) { /* json.loads gives the integer 0: float() of it is 0.0 */
            s = "0";
            n = 1;
        }
        if (!buf_put(out, s, n) || (flag && !buf_put(out, ".0", 2))) REFUSE(d, OOM);
    } else if (IS(name, n, "boolValue")) {
        if (v == 't') {
            if (!literal(d, "true", 4) || !buf_put(out, "true", 4)) return 0;
        } else if (v == 'f') {
            if (!literal(d, "false", 5) || !buf_put(out, "false", 5)) return 0;
        } else {
            REFUSE(d, "boolValue is not a boolean");
        }
    } else if (IS(name, n, "arrayValue") || IS(name, n, "kvlistValue")) {
        int is_array = name[0] == 'a';
        if (++d->nest > MAX_VALUE_DEPTH) REFUSE(d, "attribute value nested too deep");
        if (v == 'n') {
            if (!literal(d, "null", 4) || !buf_put(out, is_array ? "[]" : "{}", 2)) return 0;
        } else {
            const char *inner;
            size_t inner_n;
            int inner_first = 1, im, got = 0;
            if (!obj_open(d)) return 0;
            while ((im = obj_next(d, &inner_first, &inner, &inner_n)) == 1) {
                if (!IS(inner, inner_n, "values")) {
                    if (!skip(d, depth + 1)) return 0;
                    continue;
                }
                if (got) REFUSE(d, "duplicated member");
                got = 1;
                if (peek(d) != '[') REFUSE(d, "values is not an array");
                if (is_array) {
                    int af = 1, ar, any = 0;
                    d->p++;
                    if (!buf_putc(out, '[')) REFUSE(d, OOM);
                    while ((ar = arr_next(d, &af)) == 1) {
                        if ((any && !buf_putc(out, ',')) || !any_value(d, out, depth + 1)) return 0;
                        any = 1;
                    }
                    if (ar < 0 || !buf_putc(out, ']')) return 0;
                } else {
                    /* nested key-values use the scratch buffer too: write them elsewhere */
                    Buf saved = d->scratch;
                    memset(&d->scratch, 0, sizeof d->scratch);
                    Buf nested = {0};
                    int ok = key_values(d, &nested, depth + 1, NULL, NULL);
                    free(d->scratch.data);
                    d->scratch = saved;
                    if (!ok || !buf_put(out, nested.data, nested.len)) {
                        free(nested.data);
                        return 0;
                    }
                    free(nested.data);
                }
            }
            if (im < 0) return 0;
            if (!got && !buf_put(out, is_array ? "[]" : "{}", 2)) REFUSE(d, OOM);
        }
        d->nest--;
    } else { /* an unknown kind: None */
        if (!skip(d, depth + 1) || !buf_put(out, "null", 4)) return 0;
    }
    m = obj_next(d, &first, &name, &n);
    if (m < 0) return 0;
    if (m != 0) REFUSE(d, "AnyValue with two members");
    return 1;
}

/* --- one span's columns ----------------------------------------------------------------------- */

static void clear_slots(Slot *slots, int n) {
    for (int i = 0; i < n; i++) slots[i].set = 0;
}

/* The key columns of one span from slots into the text at base. */
static int add_slots(Dec *d, StrCol *cols, const KeySet *keys, Slot *slots, const char *base) {
    for (int i = 0; i < keys->n; i++) {
        int ok = slots[i].set ? col_add(&cols[i], base + slots[i].off, slots[i].len)
                              : col_null(&cols[i]);
        if (!ok) REFUSE(d, OOM);
    }
    return 1;
}

static int add_kind(Dec *d, const Name *kind) { return add_name(d, &d->cols[KIND], kind); }

/* The rule of a name written s, n (exactly), or NULL. */
static const Name *renamed(const Rename *rules, int count, const char *s, size_t n) {
    for (int i = 0; i < count; i++)
        if (IS_N(s, n, rules[i].from.s, rules[i].from.n)) return &rules[i].to;
    return NULL;
}

/* The table kind written s, n in letters of any case, or NULL. */
static const Name *flat_kind_any_case(const char *s, size_t n) {
    for (int i = 0; i < R.n_flat_kinds; i++) {
        const Name *k = &R.flat_kinds[i];
        if (k->n != n) continue;
        size_t j = 0;
        while (j < n && (s[j] | 0x20) == k->s[j] &&
               ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')))
            j++;
        if (j == n) return k;
    }
    return NULL;
}

/* An enum number (an int64 as JSON writes it) as its rule's index, or -1. */
static int enum_index(const char *s, size_t n, int is_int, int count) {
    int64_t v;
    if (!is_int || !parse_i64(s, n, &v) || v < 0 || v >= count) return -1;
    return (int)v;
}

/* OTLP kind: an enum number, an enum name, or a table kind in any case. */
static int otlp_kind(Dec *d) {
    const char *s;
    size_t n;
    int flag;
    char c = peek(d);
    if (c == 'n') return literal(d, "null", 4) && add_kind(d, &DEFAULT_KIND);
    if (c == '"') {
        if (!string(d, &s, &n, &flag)) return 0;
        if (flag) REFUSE(d, "escape in a kind");
        const Name *kind = renamed(R.kind_by_name, R.n_kind_names, s, n);
        if (!kind) kind = flat_kind_any_case(s, n);
        if (!kind) REFUSE(d, "unknown kind");
        return add_kind(d, kind);
    }
    if (c < '0' || c > '9') REFUSE(d, "kind of an odd type");
    if (!number(d, &s, &n, &flag)) return 0;
    int i = enum_index(s, n, flag, R.n_kind_numbers);
    if (i < 0) REFUSE(d, "unknown kind");
    return add_kind(d, &R.kind_by_number[i]);
}

static int time_value(Dec *d, StrCol *c, int required) {
    int64_t v;
    int has;
    const char *s;
    size_t n;
    if (!int64_value(d, &v, &has, &s, &n)) return 0;
    if (!has) {
        if (required) REFUSE(d, "no start time");
        return col_null(c) ? 1 : refuse(d, OOM);
    }
    /* the digits as written: they are an int64 (checked), which is all the table needs */
    return col_add(c, s, n) ? 1 : refuse(d, OOM);
}

/* OTLP status {"code", "message"}: the row reader's _status. */
static int otlp_status(Dec *d, int depth) {
    const Name *code = &DEFAULT_STATUS;
    int has_message = 0;
    if (peek(d) != '{') {
        if (!skip(d, depth)) return 0;
    } else {
        const char *name, *s;
        size_t n;
        int first = 1, m, flag;
        unsigned seen = 0;
        if (!obj_open(d)) return 0;
        while ((m = obj_next(d, &first, &name, &n)) == 1) {
            if (IS(name, n, "code")) {
                ONCE(d, seen, 0);
                char c = peek(d);
                if (c == '"') {
                    if (!string(d, &s, &n, &flag)) return 0;
                    if (flag) REFUSE(d, "escape in a status code");
                    code = renamed(R.status_by_name, R.n_status_names, s, n);
                    if (!code) code = &DEFAULT_STATUS;
                } else if (c == 'n') {
                    if (!literal(d, "null", 4)) return 0;
                    code = &DEFAULT_STATUS;
                } else if (c == '-' || (c >= '0' && c <= '9')) {
                    if (!number(d, &s, &n, &flag)) return 0;
                    int i = enum_index(s, n, flag, R.n_status_numbers);
                    code = i < 0 ? &DEFAULT_STATUS : &R.status_by_number[i];
                } else {
                    REFUSE(d, "status code of an odd type");
                }
            } else if (IS(name, n, "message")) {
                ONCE(d, seen, 1);
                if (!text_value(d, &d->cols[MESSAGE], 1, EMPTY_NULL)) return 0;
                has_message = 1;
            } else if (!skip(d, depth + 1)) {
                return 0;
            }
        }
        if (m < 0) return 0;
    }
    if (!has_message && !col_null(&d->cols[MESSAGE])) REFUSE(d, OOM);
    return add_name(d, &d->cols[STATUS], code);
}

/* OTLP events: only their times are read (the row reader's int() of each). */
static int otlp_events(Dec *d, int depth) {
    if (take_null(d)) return d->why ? 0 : 1;
    if (!expect(d, '[')) return 0;
    int first = 1, r;
    while ((r = arr_next(d, &first)) == 1) {
        if (peek(d) != '{') REFUSE(d, "event is not an object");
        const char *name;
        size_t n;
        int f = 1, m;
        if (!obj_open(d)) return 0;
        while ((m = obj_next(d, &f, &name, &n)) == 1) {
            if (IS(name, n, "timeUnixNano")) {
                int64_t v;
                int has;
                const char *digits;
                size_t digits_n;
                if (!int64_value(d, &v, &has, &digits, &digits_n)) return 0;
            } else if (IS(name, n, "attributes")) {
                d->junk.len = 0;
                if (!key_values(d, &d->junk, depth + 1, NULL, NULL)) return 0;
            } else if (!skip(d, depth + 1)) {
                return 0;
            }
        }
        if (m < 0) return 0;
    }
    return r == 0;
}

/* Columns a span sets: members it lacks get their default at the end. */
enum { S_TRACE, S_SPAN, S_PARENT, S_NAME, S_KIND, S_START, S_END, S_STATUS, S_ATTRS, S_EVENTS,
       S_MESSAGE, S_RESOURCE };

static int finish_span(Dec *d, unsigned seen, int flat) {
    if (!(seen & (1u << S_TRACE)) || !(seen & (1u << S_SPAN))) REFUSE(d, "span without ids");
    if (!(seen & (1u << S_START))) REFUSE(d, "span without a start time");
    int ok = 1;
    if (!(seen & (1u << S_PARENT))) ok &= col_null(&d->cols[PARENT_ID]);
    if (!(seen & (1u << S_NAME))) ok &= col_add(&d->cols[NAME], "", 0);
    if (!(seen & (1u << S_KIND))) ok &= col_add(&d->cols[KIND], DEFAULT_KIND.s, DEFAULT_KIND.n);
    if (!(seen & (1u << S_END))) ok &= col_null(&d->cols[END]);
    if (!(seen & (1u << S_STATUS))) {
        ok &= col_add(&d->cols[STATUS], DEFAULT_STATUS.s, DEFAULT_STATUS.n);
        if (!flat) ok &= col_null(&d->cols[MESSAGE]);
    }
    if (flat && !(seen & (1u << S_MESSAGE))) ok &= col_null(&d->cols[MESSAGE]);
    if (!(seen & (1u << S_ATTRS))) {
        ok &= col_add(&d->cols[ATTRS], "{}", 2);
        clear_slots(d->aslot, d->akeys->n);
        ok &= add_slots(d, d->acols, d->akeys, d->aslot, "");
    }
    if (flat && !(seen & (1u << S_RESOURCE))) {
        ok &= col_add(&d->cols[RESOURCE], "{}", 2);
        clear_slots(d->rslot, d->rkeys->n);
        ok &= add_slots(d, d->rcols, d->rkeys, d->rslot, "");
    }
    if (!ok) REFUSE(d, OOM);
    d->rows++;
    return 1;
}

static int otlp_attrs(Dec *d, int depth) {
    StrCol *c = &d->cols[ATTRS];
    clear_slots(d->aslot, d->akeys->n);
    if (!key_values(d, &c->data, depth, d->akeys, d->aslot)) return 0;
    /* slots are offsets into the column's buffer, which may have moved: relative to start */
    if (!col_mark(c, 1)) REFUSE(d, OOM);
    return add_slots(d, d->acols, d->akeys, d->aslot, c->data.data);
}

/* The members both layouts have (ids, name, times), under each one's own names. */
typedef struct {
    const char *otlp, *flat;
    size_t otlp_n, flat_n;
    int bit;
} Shared;

#define SHARED(o, f, bit) {o, f, sizeof(o) - 1, sizeof(f) - 1, bit}
static const Shared SHARED_MEMBERS[] = {
    SHARED("traceId", "trace_id", S_TRACE),
    SHARED("spanId", "span_id", S_SPAN),
    SHARED("parentSpanId", "parent_span_id", S_PARENT),
    SHARED("name", "name", S_NAME),
    SHARED("startTimeUnixNano", "start_time_unix_nano", S_START),
    SHARED("endTimeUnixNano", "end_time_unix_nano", S_END),
};

/* The bit of a shared member named so in this layout, or -1 for another member. */
static int shared_bit(const char *name, size_t n, int flat) {
    for (size_t i = 0; i < sizeof SHARED_MEMBERS / sizeof *SHARED_MEMBERS; i++) {
        const Shared *m = &SHARED_MEMBERS[i];
        if (flat ? IS_N(name, n, m->flat, m->flat_n) : IS_N(name, n, m->otlp, m->otlp_n))
            return m->bit;
    }
    return -1;
}

/* A shared member's value into its column (each member once). */
static int read_shared(Dec *d, int bit, unsigned *seen) {
    int has;
    ONCE(d, *seen, bit);
    switch (bit) {
    case S_TRACE:
        return id_value(d, &d->cols[TRACE_ID], R.trace_id_bytes, &has) && (has || refuse(d, "no trace id"));
    case S_SPAN:
        return id_value(d, &d->cols[SPAN_ID], R.span_id_bytes, &has) && (has || refuse(d, "no span id"));
    case S_PARENT:
        return id_value(d, &d->cols[PARENT_ID], R.span_id_bytes, &has);
    case S_NAME:
        return text_value(d, &d->cols[NAME], 0, EMPTY_KEEP);
    case S_START:
        return time_value(d, &d->cols[START], 1);
    default:
        return time_value(d, &d->cols[END], 0);
    }
}

/* The OTLP span members the table does not read (readers._SPAN_MEMBERS lists them all). */
static int known_unread(const char *name, size_t n) {
    return IS(name, n, "traceState") || IS(name, n, "flags") ||
           IS(name, n, "droppedAttributesCount") || IS(name, n, "droppedEventsCount") ||
           IS(name, n, "links") || IS(name, n, "droppedLinksCount");
}

static int otlp_span(Dec *d, int depth) {
    const char *name;
    size_t n;
    int first = 1, m, bit;
    unsigned seen = 0;
    if (peek(d) != '{') REFUSE(d, "span is not an object");
    if (!obj_open(d)) return 0;
    while ((m = obj_next(d, &first, &name, &n)) == 1) {
        int ok;
        if ((bit = shared_bit(name, n, 0)) >= 0) {
            ok = read_shared(d, bit, &seen);
        } else if (IS(name, n, "kind")) {
            ONCE(d, seen, S_KIND);
            ok = otlp_kind(d);
        } else if (IS(name, n, "status")) {
            ONCE(d, seen, S_STATUS);
            ok = otlp_status(d, depth + 1);
        } else if (IS(name, n, "attributes")) {
            ONCE(d, seen, S_ATTRS);
            ok = otlp_attrs(d, depth + 1);
        } else if (IS(name, n, "events")) {
            ONCE(d, seen, S_EVENTS);
            ok = otlp_events(d, depth + 1);
        } else if (known_unread(name, n)) {
            ok = skip(d, depth + 1);
        } else { /* a misspelled member (say "atributes"): the row reader names it */
            REFUSE(d, "unknown member in a span");
        }
        if (!ok) return 0;
    }
    if (m < 0) return 0;
    /* every span of the resource carries its text and keys */
    if (!col_add(&d->cols[RESOURCE], d->resource.data, d->resource.len) ||
        !add_slots(d, d->rcols, d->rkeys, d->rslot, d->resource.data))
        REFUSE(d, OOM);
    return finish_span(d, seen, 0);
}

static int otlp_array(Dec *d, int depth, int (*item)(Dec *, int)) {
    if (take_null(d)) return d->why ? 0 : 1;
    if (peek(d) != '[') REFUSE(d, "expected an array");
    d->p++;
    int first = 1, r;
    while ((r = arr_next(d, &first)) == 1)
        if (!item(d, depth + 1)) return 0;
    return r == 0;
}

/* A scope: an object or null (the row reader reads its name with .get). */
static int otlp_scope(Dec *d, int depth) {
    char c = peek(d);
    if (c != '{' && c != 'n') REFUSE(d, "scope is not an object");
    return skip(d, depth);
}

static int otlp_scope_spans(Dec *d, int depth) {
    const char *name;
    size_t n;
    int first = 1, m;
    unsigned seen = 0;
    if (peek(d) != '{') REFUSE(d, "scopeSpans item is not an object");
    if (!obj_open(d)) return 0;
    while ((m = obj_next(d, &first, &name, &n)) == 1) {
        int ok;
        if (IS(name, n, "spans")) {
            ONCE(d, seen, 0);
            ok = otlp_array(d, depth + 1, otlp_span);
        } else if (IS(name, n, "scope")) {
            ONCE(d, seen, 1);
            ok = otlp_scope(d, depth + 1);
        } else if (IS(name, n, "schemaUrl")) {
            ok = skip(d, depth + 1);
        } else { /* a misspelled member would lose its spans: the row reader names it */
            REFUSE(d, "unknown member in scopeSpans");
        }
        if (!ok) return 0;
    }
    return m == 0;
}

static int otlp_resource(Dec *d, int depth) {
    d->resource.len = 0;
    clear_slots(d->rslot, d->rkeys->n);
    int isnull = take_null(d);
    if (isnull < 0) return 0;
    if (isnull) return buf_put(&d->resource, "{}", 2) ? 1 : refuse(d, OOM);
    if (peek(d) != '{') REFUSE(d, "resource is not an object");
    const char *name;
    size_t n;
    int first = 1, m, got = 0;
    if (!obj_open(d)) return 0;
    while ((m = obj_next(d, &first, &name, &n)) == 1) {
        if (IS(name, n, "attributes")) {
            if (got) REFUSE(d, "duplicated member");
            got = 1;
            if (!key_values(d, &d->resource, depth + 1, d->rkeys, d->rslot)) return 0;
        } else if (!skip(d, depth + 1)) {
            return 0;
        }
    }
    if (m < 0) return 0;
    if (!got && !buf_put(&d->resource, "{}", 2)) REFUSE(d, OOM);
    return 1;
}

static int otlp_resource_spans(Dec *d, int depth) {
    const char *name;
    size_t n;
    int first = 1, m;
    unsigned seen = 0;
    if (peek(d) != '{') REFUSE(d, "resourceSpans item is not an object");
    if (!obj_open(d)) return 0;
    d->resource.len = 0;
    clear_slots(d->rslot, d->rkeys->n);
    if (!buf_put(&d->resource, "{}", 2)) REFUSE(d, OOM);
    while ((m = obj_next(d, &first, &name, &n)) == 1) {
        int ok;
        if (IS(name, n, "resource")) {
            ONCE(d, seen, 0);
            if (seen & 2) REFUSE(d, "resource after its spans");
            ok = otlp_resource(d, depth + 1);
        } else if (IS(name, n, "scopeSpans")) {
            ONCE(d, seen, 1);
            ok = otlp_array(d, depth + 1, otlp_scope_spans);
        } else if (IS(name, n, "scope_spans")) {
            REFUSE(d, "scope_spans");
        } else if (IS(name, n, "schemaUrl")) {
            ok = skip(d, depth + 1);
        } else { /* a misspelled member would lose its spans: the row reader names it */
            REFUSE(d, "unknown member in resourceSpans");
        }
        if (!ok) return 0;
    }
    return m == 0;
}

static int otlp_line(Dec *d) {
    const char *name;
    size_t n;
    int first = 1, m;
    unsigned seen = 0;
    int64_t rows = d->rows;
    if (!obj_open(d)) return 0;
    while ((m = obj_next(d, &first, &name, &n)) == 1) {
        if (!IS(name, n, "resourceSpans")) REFUSE(d, "a member other than resourceSpans");
        ONCE(d, seen, 0);
        if (!otlp_array(d, 1, otlp_resource_spans)) return 0;
    }
    if (m == 0 && !seen) REFUSE(d, "a line without resourceSpans");
    if (m == 0 && d->rows == rows) REFUSE(d, "a trace request without any span");
    return m == 0;
}

/* --- the flat layout -------------------------------------------------------------------------- */

/* A flat object member (resource or attributes): its text kept as written, its known keys'
 * values noted. */
static int flat_object(Dec *d, StrCol *c, const KeySet *keys, Slot *slots, StrCol *key_cols) {
    clear_slots(slots, keys->n);
    int isnull = take_null(d);
    if (isnull < 0) return 0;
    if (isnull) {
        if (!col_add(c, "{}", 2)) REFUSE(d, OOM);
        return add_slots(d, key_cols, keys, slots, "");
    }
    if (peek(d) != '{') REFUSE(d, "not an object");
    const char *at = d->p, *name;
    size_t n, escapes = d->escapes;
    int first = 1, m;
    d->p++;
    while ((m = obj_next_any(d, &first, &name, &n)) == 1) {
        int i = keys_find(keys, name, n);
        ws(d);
        const char *v = d->p;
        if (!skip_value(d, 0)) return 0;
        if (i >= 0) {
            slots[i].off = (size_t)(v - at);
            slots[i].len = (size_t)(d->p - v);
            slots[i].set = 1;
        }
    }
    if (m < 0) return 0;
    if (d->escapes == escapes) { /* the usual case: kept as written */
        if (!col_add(c, at, (size_t)(d->p - at))) REFUSE(d, OOM);
        return add_slots(d, key_cols, keys, slots, at);
    }
    /* an escape somewhere: written again, canonically (see put_string) */
    const char *after = d->p;
    d->p = at;
    clear_slots(slots, keys->n);
    if (!canon(d, &c->data, 1, keys, slots)) return 0;
    if (d->p != after) REFUSE(d, "object read two ways");
    if (!col_mark(c, 1)) REFUSE(d, OOM);
    return add_slots(d, key_cols, keys, slots, c->data.data);
}

static int flat_line(Dec *d) {
    const char *name, *s;
    size_t n;
    int first = 1, m, bit, flag;
    unsigned seen = 0;
    if (!obj_open(d)) return 0;
    while ((m = obj_next(d, &first, &name, &n)) == 1) {
        int ok;
        if ((bit = shared_bit(name, n, 1)) >= 0) {
            ok = read_shared(d, bit, &seen);
        } else if (IS(name, n, "kind")) {
            ONCE(d, seen, S_KIND);
            int isnull = take_null(d);
            if (isnull < 0) return 0;
            if (isnull) {
                ok = add_kind(d, &DEFAULT_KIND);
            } else {
                if (peek(d) != '"') REFUSE(d, "kind is not a string");
                if (!string(d, &s, &n, &flag)) return 0;
                const Name *kind = n == 0 ? &DEFAULT_KIND : NULL;
                for (int i = 0; i < R.n_flat_kinds && !kind && !flag; i++)
                    if (IS_N(s, n, R.flat_kinds[i].s, R.flat_kinds[i].n)) kind = &R.flat_kinds[i];
                if (!kind) REFUSE(d, "unknown kind");
                ok = add_kind(d, kind);
            }
        } else if (IS(name, n, "status")) {
            ONCE(d, seen, S_STATUS);
            int isnull = take_null(d);
            if (isnull < 0) return 0;
            ok = isnull ? add_name(d, &d->cols[STATUS], &DEFAULT_STATUS)
                        : text_value(d, &d->cols[STATUS], 0, EMPTY_UNSET);
        } else if (IS(name, n, "status_message")) {
            ONCE(d, seen, S_MESSAGE);
            ok = text_value(d, &d->cols[MESSAGE], 1, EMPTY_KEEP);
        } else if (IS(name, n, "resource")) {
            ONCE(d, seen, S_RESOURCE);
            ok = flat_object(d, &d->cols[RESOURCE], d->rkeys, d->rslot, d->rcols);
        } else if (IS(name, n, "attributes")) {
            ONCE(d, seen, S_ATTRS);
            ok = flat_object(d, &d->cols[ATTRS], d->akeys, d->aslot, d->acols);
        } else if (IS(name, n, "resourceSpans") || IS(name, n, "resource_spans") ||
                   IS(name, n, "result")) {
            REFUSE(d, "a flat span with an OTLP member");
        } else {
            ok = skip(d, 1);
        }
        if (!ok) return 0;
    }
    if (m < 0) return 0;
    if (!(seen & (1u << S_TRACE)) || !(seen & (1u << S_SPAN)) || !(seen & (1u << S_START)))
        REFUSE(d, "flat span without trace_id, span_id or start_time_unix_nano");
    return finish_span(d, seen, 1);
}

/* --- the chunk -------------------------------------------------------------------------------- */

static int decode_lines(Dec *d, int flat) {
    while (d->p < d->end) {
        const char *nl = memchr(d->p, '\n', (size_t)(d->end - d->p));
        const char *line_end = nl ? nl : d->end;
        const char *chunk_end = d->end;
        d->line_start = d->p;
        d->end = line_end;
        ws(d);
        if (d->p == line_end) REFUSE(d, "blank line");
        int ok = flat ? flat_line(d) : otlp_line(d);
        if (ok) {
            ws(d);
            if (d->p != line_end) {
                d->why = d->why ? d->why : "more than one value on a line";
                ok = 0;
            }
        }
        d->end = chunk_end;
        if (!ok) return 0;
        d->p = nl ? nl + 1 : chunk_end;
        /* every column holds one row a span */
    }
    return 1;
}

/* --- Arrow export ----------------------------------------------------------------------------- */

typedef struct {
    void *buffers[4];
    const void *pointers[4];
} ArrPriv;

static void release_array(struct ArrowArray *a) {
    for (int64_t i = 0; a->children && i < a->n_children; i++) {
        if (!a->children[i]) continue; /* left unmade when memory ran out */
        if (a->children[i]->release) a->children[i]->release(a->children[i]);
        free(a->children[i]);
    }
    free(a->children);
    ArrPriv *p = a->private_data;
    if (p) {
        for (int i = 0; i < 4; i++) free(p->buffers[i]);
        free(p);
    }
    a->release = NULL;
}

static void release_schema(struct ArrowSchema *s) {
    for (int64_t i = 0; s->children && i < s->n_children; i++) {
        if (!s->children[i]) continue;
        if (s->children[i]->release) s->children[i]->release(s->children[i]);
        free(s->children[i]);
    }
    free(s->children);
    free((void *)s->name);
    s->release = NULL;
}

static int make_schema(struct ArrowSchema *s, const char *format, const char *name, int64_t n) {
    memset(s, 0, sizeof *s);
    s->format = format; /* static strings */
    s->name = strdup(name);
    s->flags = ARROW_FLAG_NULLABLE;
    s->n_children = n;
    s->release = release_schema;
    if (!s->name) return 0;
    if (n) {
        s->children = calloc((size_t)n, sizeof *s->children);
        if (!s->children) return 0;
        for (int64_t i = 0; i < n; i++) {
            s->children[i] = calloc(1, sizeof(struct ArrowSchema));
            if (!s->children[i]) return 0;
        }
    }
    return 1;
}

static int make_array(struct ArrowArray *a, int64_t length, int64_t nbuf, int64_t n) {
    memset(a, 0, sizeof *a);
    a->length = length;
    a->n_buffers = nbuf;
    a->n_children = n;
    a->release = release_array;
    ArrPriv *p = calloc(1, sizeof *p);
    a->private_data = p;
    if (!p) return 0;
    a->buffers = p->pointers;
    if (n) {
        a->children = calloc((size_t)n, sizeof *a->children);
        if (!a->children) return 0;
        for (int64_t i = 0; i < n; i++) {
            a->children[i] = calloc(1, sizeof(struct ArrowArray));
            if (!a->children[i]) return 0;
        }
    }
    return 1;
}

/* Moves a column's buffers into an Arrow string-view array ("vu"), the layout polars keeps
 * strings in: it takes the buffers as they are, where a plain utf8 array ("u") was copied value
 * by value (~7% of a flat ingest's CPU). Views of up to 12 bytes hold the string itself; longer
 * ones its first 4 bytes and where it is in the one data buffer. */
static int export_col(StrCol *c, struct ArrowArray *a, struct ArrowSchema *s, const char *name) {
    if (!make_schema(s, "vu", name, 0) || !make_array(a, c->rows, 4, 0)) return 0;
    ArrPriv *p = a->private_data;
    if (!c->data.data && !buf_reserve(&c->data, 1)) return 0;
    if (!c->valid.data && !buf_reserve(&c->valid, 1)) return 0;
    size_t rows = (size_t)c->rows;
    char *views = calloc(rows ? rows : 1, 16);
    int64_t *sizes = malloc(sizeof(int64_t));
    if (!views || !sizes) {
        free(views);
        free(sizes);
        return 0;
    }
    const int32_t *off = (const int32_t *)c->offsets.data;
    for (size_t i = 0; i < rows; i++) {
        int32_t start = off[i], len = off[i + 1] - off[i];
        char *v = views + 16 * i;
        memcpy(v, &len, 4);
        if (len <= 12) {
            memcpy(v + 4, c->data.data + start, (size_t)len);
        } else {
            int32_t buffer = 0;
            memcpy(v + 4, c->data.data + start, 4);
            memcpy(v + 8, &buffer, 4);
            memcpy(v + 12, &start, 4);
        }
    }
    *sizes = (int64_t)c->data.len;
    free(c->offsets.data);
    a->null_count = c->nulls;
    p->buffers[0] = c->valid.data;
    p->buffers[1] = views;
    p->buffers[2] = c->data.data;
    p->buffers[3] = sizes;
    p->pointers[0] = c->nulls ? c->valid.data : NULL;
    p->pointers[1] = views;
    p->pointers[2] = c->data.data;
    p->pointers[3] = sizes;
    memset(c, 0, sizeof *c);
    return 1;
}

static int export_struct(StrCol *cols, const KeySet *keys, int64_t rows, struct ArrowArray *a,
                         struct ArrowSchema *s, const char *name) {
    if (!make_schema(s, "+s", name, keys->n) || !make_array(a, rows, 1, keys->n)) return 0;
    for (int i = 0; i < keys->n; i++)
        if (!export_col(&cols[i], a->children[i], s->children[i], keys->name[i])) return 0;
    return 1;
}

/* --- the Python object ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    struct ArrowSchema *schema;
    struct ArrowArray *array;
    int64_t rows;
} Columns;

static void free_schema(struct ArrowSchema *s) {
    if (!s) return;
    if (s->release) s->release(s);
    free(s);
}

static void free_array(struct ArrowArray *a) {
    if (!a) return;
    if (a->release) a->release(a);
    free(a);
}

static void columns_dealloc(Columns *self) {
    free_schema(self->schema);
    free_array(self->array);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void schema_capsule_free(PyObject *capsule) {
    free_schema(PyCapsule_GetPointer(capsule, "arrow_schema"));
}

static void array_capsule_free(PyObject *capsule) {
    free_array(PyCapsule_GetPointer(capsule, "arrow_array"));
}

static PyObject *columns_arrow(Columns *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"requested_schema", NULL};
    PyObject *requested = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kwlist, &requested)) return NULL;
    if (!self->array) {
        PyErr_SetString(PyExc_RuntimeError, "the columns were handed over already");
        return NULL;
    }
    PyObject *schema = PyCapsule_New(self->schema, "arrow_schema", schema_capsule_free);
    if (!schema) return NULL;
    self->schema = NULL;
    PyObject *array = PyCapsule_New(self->array, "arrow_array", array_capsule_free);
    if (!array) {
        Py_DECREF(schema);
        return NULL;
    }
    self->array = NULL;
    return Py_BuildValue("(NN)", schema, array);
}

static PyObject *columns_len(Columns *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(self->rows);
}

static PyMethodDef columns_methods[] = {
    {"__arrow_c_array__", (PyCFunction)(void (*)(void))columns_arrow, METH_VARARGS | METH_KEYWORDS,
     "The spans as one Arrow struct array (can be taken once)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef columns_getset[] = {
    {"rows", (getter)columns_len, NULL, "spans decoded", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ColumnsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "analyze._spanjson.Columns",
    .tp_basicsize = sizeof(Columns),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)columns_dealloc,
    .tp_methods = columns_methods,
    .tp_getset = columns_getset,
    .tp_doc = "Decoded span columns, handed to polars by the Arrow PyCapsule interface.",
};

static int keys_from(PyObject *seq, KeySet *k, PyObject **hold) {
    /* a tuple of our own: the names are read without the GIL, so nobody may change them */
    *hold = PySequence_Tuple(seq);
    if (!*hold) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(*hold);
    if (n > MAX_KEYS) {
        PyErr_SetString(PyExc_ValueError, "too many keys");
        return 0;
    }
    memset(k, 0, sizeof *k);
    k->n = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(*hold, i), &len);
        if (!s) return 0;
        k->name[i] = s;
        k->len[i] = (size_t)len;
        uint32_t h = key_hash(s, (size_t)len) & (HASH_SLOTS - 1);
        while (k->slot[h]) h = (h + 1) & (HASH_SLOTS - 1);
        k->slot[h] = (int16_t)(i + 1);
    }
    return 1;
}

static void dec_free(Dec *d) {
    for (int i = 0; i < N_COLS; i++) col_free(&d->cols[i]);
    if (d->acols)
        for (int i = 0; i < d->akeys->n; i++) col_free(&d->acols[i]);
    if (d->rcols)
        for (int i = 0; i < d->rkeys->n; i++) col_free(&d->rcols[i]);
    free(d->acols);
    free(d->rcols);
    free(d->scratch.data);
    free(d->resource.data);
    free(d->text.data);
    free(d->junk.data);
}

static PyObject *decode(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    const char *layout;
    PyObject *data, *akeys_obj, *rkeys_obj, *hold_a = NULL, *hold_r = NULL, *result = NULL;
    /* bytes only: it is read without the GIL, so it must not change (a bytearray could) */
    if (!PyArg_ParseTuple(args, "SsOO", &data, &layout, &akeys_obj, &rkeys_obj)) return NULL;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (!R.ready) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "set_rules() first");
        return NULL;
    }
    int flat = strcmp(layout, "flat") == 0;
    if (!flat && strcmp(layout, "otlp") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "layout must be 'flat' or 'otlp'");
        return NULL;
    }
    KeySet *akeys = malloc(sizeof(KeySet)), *rkeys = malloc(sizeof(KeySet));
    Dec *d = calloc(1, sizeof(Dec));
    if (!akeys || !rkeys || !d) {
        PyErr_NoMemory();
        goto done;
    }
    if (!keys_from(akeys_obj, akeys, &hold_a) || !keys_from(rkeys_obj, rkeys, &hold_r)) goto done;
    d->akeys = akeys;
    d->rkeys = rkeys;
    d->p = view.buf;
    d->end = (const char *)view.buf + view.len;
    d->acols = calloc((size_t)akeys->n + 1, sizeof(StrCol));
    d->rcols = calloc((size_t)rkeys->n + 1, sizeof(StrCol));
    if (!d->acols || !d->rcols) {
        PyErr_NoMemory();
        goto done;
    }
    int ok = 1;
    for (int i = 0; i < N_COLS; i++) ok &= col_init(&d->cols[i]);
    for (int i = 0; i < akeys->n; i++) ok &= col_init(&d->acols[i]);
    for (int i = 0; i < rkeys->n; i++) ok &= col_init(&d->rcols[i]);
    if (!ok) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    ok = decode_lines(d, flat);
    Py_END_ALLOW_THREADS;
    if (!ok) {
        result = PyUnicode_FromString(d->why ? d->why : "refused");
        goto done;
    }
    Columns *cols = PyObject_New(Columns, &ColumnsType);
    if (!cols) goto done;
    cols->rows = d->rows;
    cols->schema = calloc(1, sizeof(struct ArrowSchema));
    cols->array = calloc(1, sizeof(struct ArrowArray));
    ok = cols->schema && cols->array && make_schema(cols->schema, "+s", "", N_COLS + 2) &&
         make_array(cols->array, d->rows, 1, N_COLS + 2);
    for (int i = 0; ok && i < N_COLS; i++)
        ok = export_col(&d->cols[i], cols->array->children[i], cols->schema->children[i],
                        COL_NAMES[i]);
    ok = ok && export_struct(d->acols, akeys, d->rows, cols->array->children[N_COLS],
                             cols->schema->children[N_COLS], "a");
    ok = ok && export_struct(d->rcols, rkeys, d->rows, cols->array->children[N_COLS + 1],
                             cols->schema->children[N_COLS + 1], "r");
    if (!ok) {
        Py_DECREF(cols);
        PyErr_NoMemory();
        goto done;
    }
    result = (PyObject *)cols;
done:
    if (d) dec_free(d);
    free(d);
    free(akeys);
    free(rkeys);
    Py_XDECREF(hold_a);
    Py_XDECREF(hold_r);
    PyBuffer_Release(&view);
    return result;
}

/* --- set_rules: the rules from their Python declaration ------------------------------------- */

static int copy_name(PyObject *text, Name *out) {
    Py_ssize_t n;
    const char *s = PyUnicode_Check(text) ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    if (!s) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a rule name must be a str");
        return 0;
    }
    out->s = malloc((size_t)n + 1);
    if (!out->s) {
        PyErr_NoMemory();
        return 0;
    }
    memcpy(out->s, s, (size_t)n + 1);
    out->n = (size_t)n;
    return 1;
}

/* names: a sequence of str; with renames, a sequence of (str, str). */
static int copy_rules(PyObject *seq, Name *names, Rename *renames, int *count) {
    PyObject *items = PySequence_Tuple(seq);
    if (!items) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    int ok = n > 0 && n <= MAX_RULES;
    if (!ok) PyErr_SetString(PyExc_ValueError, "between 1 and 16 rules");
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        if (names) {
            ok = copy_name(item, &names[i]);
        } else if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "a rename must be a (str, str) tuple");
            ok = 0;
        } else {
            ok = copy_name(PyTuple_GET_ITEM(item, 0), &renames[i].from) &&
                 copy_name(PyTuple_GET_ITEM(item, 1), &renames[i].to);
        }
        if (ok) *count = (int)i + 1;
    }
    Py_DECREF(items);
    return ok;
}

static void free_rules(void) {
    for (int i = 0; i < R.n_kind_numbers; i++) free(R.kind_by_number[i].s);
    for (int i = 0; i < R.n_flat_kinds; i++) free(R.flat_kinds[i].s);
    for (int i = 0; i < R.n_status_numbers; i++) free(R.status_by_number[i].s);
    for (int i = 0; i < R.n_kind_names; i++) {
        free(R.kind_by_name[i].from.s);
        free(R.kind_by_name[i].to.s);
    }
    for (int i = 0; i < R.n_status_names; i++) {
        free(R.status_by_name[i].from.s);
        free(R.status_by_name[i].to.s);
    }
    memset(&R, 0, sizeof R);
}

static PyObject *set_rules(PyObject *module, PyObject *args, PyObject *kwargs) {
    (void)module;
    static char *kwlist[] = {"kind_by_number", "kind_by_name", "flat_kinds", "status_by_number",
                             "status_by_name", "trace_id_bytes", "span_id_bytes", NULL};
    PyObject *kind_by_number, *kind_by_name, *flat_kinds, *status_by_number, *status_by_name;
    Py_ssize_t trace_bytes, span_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOnn", kwlist, &kind_by_number,
                                     &kind_by_name, &flat_kinds, &status_by_number,
                                     &status_by_name, &trace_bytes, &span_bytes))
        return NULL;
    if (trace_bytes < 1 || trace_bytes > MAX_ID_BYTES || span_bytes < 1 ||
        span_bytes > MAX_ID_BYTES) {
        PyErr_SetString(PyExc_ValueError, "id sizes must be 1 to 32 bytes");
        return NULL;
    }
    free_rules();
    if (!copy_rules(kind_by_number, R.kind_by_number, NULL, &R.n_kind_numbers) ||
        !copy_rules(kind_by_name, NULL, R.kind_by_name, &R.n_kind_names) ||
        !copy_rules(flat_kinds, R.flat_kinds, NULL, &R.n_flat_kinds) ||
        !copy_rules(status_by_number, R.status_by_number, NULL, &R.n_status_numbers) ||
        !copy_rules(status_by_name, NULL, R.status_by_name, &R.n_status_names)) {
        free_rules();
        return NULL;
    }
    R.trace_id_bytes = (size_t)trace_bytes;
    R.span_id_bytes = (size_t)span_bytes;
    R.ready = 1;
    Py_RETURN_NONE;
}

static PyObject *count_lines(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    Py_ssize_t n = 0;
    Py_BEGIN_ALLOW_THREADS;
    const char *p = view.buf, *end = (const char *)view.buf + view.len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"count_lines", count_lines, METH_VARARGS,
     "count_lines(data) -> int\n\nThe newlines in data (memchr, without the GIL: bytes.count\n"
     "walks a byte at a time, which the chunker paid on every chunk)."},
    {"set_rules", (PyCFunction)(void (*)(void))set_rules, METH_VARARGS | METH_KEYWORDS,
     "set_rules(*, kind_by_number, kind_by_name, flat_kinds, status_by_number, status_by_name,\n"
     "          trace_id_bytes, span_id_bytes) -> None\n\n"
     "The span kind and status mappings and the id sizes, from their one declaration\n"
     "(analyze.columns); called once, before any decode (not while one runs)."},
    {"decode", decode, METH_VARARGS,
     "decode(data, layout, attribute_keys, resource_keys) -> Columns | str\n\n"
     "Complete JSON lines of spans ('flat' or 'otlp') as columns, or the reason the chunk is\n"
     "refused (the caller then reads it another way)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "analyze._spanjson", "JSON lines of spans decoded to Arrow columns.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__spanjson(void) {
    if (PyType_Ready(&ColumnsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ColumnsType);
    if (PyModule_AddObject(m, "Columns", (PyObject *)&ColumnsType) < 0) {
        Py_DECREF(&ColumnsType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
