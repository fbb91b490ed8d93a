/* tu.h — small helpers shared by the cmocka tests: locating ../shared, temporary files,
 * reading whole files, and a double comparison cmocka 1.1.5 lacks.
 * Include after <cmocka.h>'s prerequisites (stdarg, stddef, setjmp). */
#ifndef QKIT_TESTS_TU_H
#define QKIT_TESTS_TU_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* 1 in the AddressSanitizer build (gcc's macro, clang's feature test): the tier that looks for
 * memory errors, where a test may trim work whose values the fast tier already checks. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Path of ../shared (or $QKIT_SHARED) joined with rel into a static buffer; NULL when it does not
 * exist. Use TU_SHARED(rel) in a test: it skips the test visibly when the data is missing. */
const char *tu_shared(const char *rel);
#define TU_SHARED(var, rel)                                                                   \
    const char *var = tu_shared(rel);                                                        \
    do {                                                                                      \
        if (!var) {                                                                           \
            print_message("shared data missing: %s (test skipped)\n", rel);                   \
            skip();                                                                           \
        }                                                                                     \
    } while (0)

/* A fresh path inside this process's temporary directory (removed at exit). Static buffer
 * rotated over 8 slots, so a few paths can be alive at once. */
const char *tu_tmp(const char *name);

/* Whole file into a malloc'd buffer with a NUL after the last byte (*size excludes it; caller
 * frees); fails the test on error. */
void *tu_read(const char *path, size_t *size);
void tu_write(const char *path, const void *data, size_t size);
int tu_exists(const char *path);
void tu_copy(const char *from, const char *to);
/* A fresh directory under the temporary directory (fails the test if it exists). */
const char *tu_mkdir(const char *name);
/* dir/name in a static buffer rotated over 8 slots; fails the test when it does not fit. */
const char *tu_join(const char *dir, const char *name);
/* A whole JSON file parsed with cJSON (caller deletes); fails the test when invalid. */
struct cJSON *tu_read_json(const char *path);
/* Fails unless msg holds fragment on one line (error messages are one line). */
void tu_assert_msg(const char *msg, const char *fragment);

/* Fails the test when |a-b| > tol, printing both values. */
#define tu_assert_near(a, b, tol) tu_assert_near_impl((a), (b), (tol), __FILE__, __LINE__)
void tu_assert_near_impl(double a, double b, double tol, const char *file, int line);

/* Deterministic pseudo-random numbers for test inputs (xorshift64*). */
uint64_t tu_rand(uint64_t *state);
float tu_randf(uint64_t *state); /* uniform in [-1, 1) */

#endif
