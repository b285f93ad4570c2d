/*
 * test.h - a tiny unit-test harness.  Each tests/unit/t-*.c defines
 * tests with TEST(name) { ... } and ends with TEST_MAIN(); the binary
 * prints failures and a final "N passed, N failed" line.
 */
#ifndef LLMQ_TEST_H
#define LLMQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };

extern struct test_case test_cases[512];
extern int test_count, test_failed_now;

#define TEST(tname_)                                                       \
    static void tname_(void);                                              \
    __attribute__((constructor)) static void reg_##tname_(void) {          \
        test_cases[test_count].name = #tname_;                             \
        test_cases[test_count++].fn = tname_;                              \
    }                                                                      \
    static void tname_(void)

#define CHECK(cond) do { if (!(cond)) {                                    \
        fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        test_failed_now = 1; } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) {                           \
        fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr);                 \
        test_failed_now = 1; } } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
    if (_a != _b) { fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n",  \
        __FILE__, __LINE__, #a, _a, _b); test_failed_now = 1; } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b);              \
    if (!(fabs(_a - _b) <= (tol))) { fprintf(stderr, "  %s:%d: %s = %.9g, expected %.9g (tol %g)\n", \
        __FILE__, __LINE__, #a, _a, _b, (double)(tol)); test_failed_now = 1; } } while (0)

#define TEST_MAIN()                                                        \
    struct test_case test_cases[512];                                      \
    int test_count, test_failed_now;                                       \
    int main(int argc, char **argv) {                                      \
        int pass = 0, fail = 0;                                            \
        for (int i = 0; i < test_count; i++) {                             \
            if (argc > 1 && !strstr(test_cases[i].name, argv[1])) continue; \
            test_failed_now = 0;                                           \
            test_cases[i].fn();                                            \
            if (test_failed_now) { fail++; fprintf(stderr, "FAIL %s\n", test_cases[i].name); } \
            else pass++;                                                   \
        }                                                                  \
        printf("%d passed, %d failed\n", pass, fail);                      \
        return fail ? 1 : 0;                                               \
    }

#endif
