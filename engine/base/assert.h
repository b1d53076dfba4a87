/* engine/base/assert.h: assertions that are always on (STYLE B6). */
#ifndef TDM_ENGINE_BASE_ASSERT_H
#define TDM_ENGINE_BASE_ASSERT_H

#include <stdbool.h>

_Noreturn void tdm_assert_fail(const char *expr, const char *file, int line, const char *func);

/* Called before abort() when set; tests install one that calls mock_assert(). */
typedef void (*tdm_assert_hook)(const char *expr, const char *file, int line);
void tdm_assert_hook_set(tdm_assert_hook hook);

/* Always on, in every build type: a broken invariant must stop the process
 * before it writes a wrong byte. */
#define tdm_assert(expr) ((expr) ? (void)0 : tdm_assert_fail(#expr, __FILE__, __LINE__, __func__))

/* Costly O(n) checks: evaluated in -Dverify=true builds only. */
#if TDM_VERIFY
#define tdm_verify(expr) tdm_assert(expr)
#else
#define tdm_verify(expr) ((void)sizeof(expr))
#endif

#define tdm_unreachable()       tdm_assert_fail("unreachable", __FILE__, __LINE__, __func__)
#define tdm_static_assert(expr) _Static_assert(expr, #expr)

#endif
