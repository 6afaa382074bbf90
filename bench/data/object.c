/*
 * object.c: a small self-contained C library written for llmc's benchmark
 * data. It exists only to be compiled (`cc -O2 -c object.c`) into
 * bench/data/object.o, a realistic ELF relocatable object for the binary
 * fallback measurements. Nothing links against it.
 *
 * Contents: CRC-32, base64, LEB128 varints, an open-addressing hash map,
 * an introsort-like sort, a tiny tokenizer for key=value config lines and
 * a fixed-point moving-average filter.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- CRC-32 */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t bench_crc32(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    if (!crc_ready)
        crc_init();
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bench_b64_encode(const uint8_t *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = (i + 1 < n) ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Returns the number of bytes written, or -1 on malformed input. */
long bench_b64_decode(const char *in, size_t n, uint8_t *out) {
    long o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            break;
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

/* ---------------------------------------------------------------- varint */

size_t bench_uleb_put(uint64_t v, uint8_t *out) {
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[n++] = b | (v ? 0x80 : 0);
    } while (v);
    return n;
}

/* Returns bytes consumed, 0 if truncated or longer than 10 bytes. */
size_t bench_uleb_get(const uint8_t *in, size_t n, uint64_t *v) {
    uint64_t r = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        r |= (uint64_t)(in[i] & 0x7F) << (7 * i);
        if (!(in[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

int64_t bench_zigzag_decode(uint64_t u) {
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* -------------------------------------------------------------- hash map */

struct bench_entry {
    char *key;
    int64_t value;
};

struct bench_map {
    struct bench_entry *slots;
    size_t cap;   /* power of two */
    size_t len;
};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 0x100000001b3ull;
    }
    return h;
}

struct bench_map *bench_map_new(size_t cap) {
    struct bench_map *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    size_t c = 16;
    while (c < cap * 2)
        c <<= 1;
    m->slots = calloc(c, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->cap = c;
    m->len = 0;
    return m;
}

static int map_grow(struct bench_map *m) {
    size_t nc = m->cap * 2;
    struct bench_entry *ns = calloc(nc, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = fnv1a(m->slots[i].key) & (nc - 1);
        while (ns[j].key)
            j = (j + 1) & (nc - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = nc;
    return 0;
}

int bench_map_put(struct bench_map *m, const char *key, int64_t value) {
    if ((m->len + 1) * 4 > m->cap * 3 && map_grow(m) != 0)
        return -1;
    size_t i = fnv1a(key) & (m->cap - 1);
    while (m->slots[i].key) {
        if (strcmp(m->slots[i].key, key) == 0) {
            m->slots[i].value = value;
            return 0;
        }
        i = (i + 1) & (m->cap - 1);
    }
    size_t kl = strlen(key) + 1;
    char *k = malloc(kl);
    if (!k)
        return -1;
    memcpy(k, key, kl);
    m->slots[i].key = k;
    m->slots[i].value = value;
    m->len++;
    return 1;
}

const int64_t *bench_map_get(const struct bench_map *m, const char *key) {
    size_t i = fnv1a(key) & (m->cap - 1);
    while (m->slots[i].key) {
        if (strcmp(m->slots[i].key, key) == 0)
            return &m->slots[i].value;
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

void bench_map_free(struct bench_map *m) {
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

/* ------------------------------------------------------------------ sort */

static void insertion_sort(int32_t *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        int32_t x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > x) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

static int32_t median3(int32_t a, int32_t b, int32_t c) {
    if (a < b)
        return b < c ? b : (a < c ? c : a);
    return a < c ? a : (b < c ? c : b);
}

void bench_sort_i32(int32_t *a, size_t n) {
    while (n > 24) {
        int32_t p = median3(a[0], a[n / 2], a[n - 1]);
        size_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i >= j)
                break;
            int32_t t = a[i]; a[i] = a[j]; a[j] = t;
            i++;
            j--;
        }
        /* recurse into the smaller half, loop on the larger one */
        if (j + 1 < n - j - 1) {
            bench_sort_i32(a, j + 1);
            a += j + 1;
            n -= j + 1;
        } else {
            bench_sort_i32(a + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    insertion_sort(a, n);
}

/* ------------------------------------------------------------ config kv */

struct bench_kv {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
};

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Parses one "key = value  # comment" line. Returns 1 on a pair, 0 on a
 * blank or comment line, -1 on a syntax error. */
int bench_parse_kv(const char *line, size_t n, struct bench_kv *kv) {
    size_t i = 0;
    while (i < n && is_space(line[i])) i++;
    if (i == n || line[i] == '#' || line[i] == '\n')
        return 0;
    size_t ks = i;
    while (i < n && line[i] != '=' && !is_space(line[i])) i++;
    size_t ke = i;
    while (i < n && is_space(line[i])) i++;
    if (i == n || line[i] != '=' || ke == ks)
        return -1;
    i++;
    while (i < n && is_space(line[i])) i++;
    size_t vs = i;
    int quoted = i < n && line[i] == '"';
    if (quoted) {
        vs = ++i;
        while (i < n && line[i] != '"') i++;
        if (i == n)
            return -1;
        kv->val_len = i - vs;
    } else {
        while (i < n && line[i] != '#' && line[i] != '\n') i++;
        size_t ve = i;
        while (ve > vs && is_space(line[ve - 1])) ve--;
        kv->val_len = ve - vs;
    }
    kv->key = line + ks;
    kv->key_len = ke - ks;
    kv->val = line + vs;
    return 1;
}

/* --------------------------------------------------------------- filter */

struct bench_ema {
    int32_t state;  /* Q16.16 */
    int shift;      /* alpha = 2^-shift */
};

void bench_ema_init(struct bench_ema *f, int shift, int32_t first) {
    f->shift = shift;
    f->state = first * 65536;
}

int32_t bench_ema_step(struct bench_ema *f, int32_t x) {
    int32_t target = x * 65536;
    f->state += (target - f->state) >> f->shift;
    return (f->state + 32768) >> 16;
}

/* Filters a whole buffer in place and returns its peak absolute value. */
int32_t bench_ema_run(int16_t *buf, size_t n, int shift) {
    if (n == 0)
        return 0;
    struct bench_ema f;
    int32_t peak = 0;
    bench_ema_init(&f, shift, buf[0]);
    for (size_t i = 0; i < n; i++) {
        int32_t y = bench_ema_step(&f, buf[i]);
        if (y > INT16_MAX) y = INT16_MAX;
        if (y < INT16_MIN) y = INT16_MIN;
        buf[i] = (int16_t)y;
        if (abs(y) > peak)
            peak = abs(y);
    }
    return peak;
}
