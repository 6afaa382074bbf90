/* Memory read bandwidth of this machine: T threads each stream their share of
 * a 512 MiB buffer four times (AVX-512 loads, summed so nothing is optimized
 * away). Decoding at long context streams the KV caches, so this is the
 * bound for its attention (docs/NUMERICS.md section 7).
 *
 *   gcc -O2 -mavx512f -pthread bench/membw.c -o /tmp/membw && /tmp/membw 1 && /tmp/membw 2
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES (512UL << 20)
#define PASSES 4

static char *buf;
static int threads;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *stream(void *arg) {
    size_t per = BYTES / threads;
    const char *p = buf + (size_t)arg * per;
    __m512i acc = _mm512_setzero_si512();
    for (int r = 0; r < PASSES; r++)
        for (size_t i = 0; i < per; i += 256) {
            acc = _mm512_add_epi32(acc, _mm512_load_si512(p + i));
            acc = _mm512_add_epi32(acc, _mm512_load_si512(p + i + 64));
            acc = _mm512_add_epi32(acc, _mm512_load_si512(p + i + 128));
            acc = _mm512_add_epi32(acc, _mm512_load_si512(p + i + 192));
        }
    int lanes[16];
    _mm512_storeu_si512(lanes, acc);
    return (void *)(long)lanes[0];
}

int main(int argc, char **argv) {
    threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 64) return 2;
    buf = aligned_alloc(64, BYTES);
    if (!buf) return 1;
    memset(buf, 1, BYTES);
    pthread_t th[64];
    double t0 = now();
    for (long i = 0; i < threads; i++) pthread_create(&th[i], 0, stream, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
    double t = now() - t0;
    printf("%d thread(s): %.1f GB/s read\n", threads, (double)PASSES * BYTES / t / 1e9);
    return 0;
}
