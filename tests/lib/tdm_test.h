/* tests/lib/tdm_test.h: what every cmocka test includes (cmocka needs these first). */
#ifndef TDM_TESTS_LIB_TDM_TEST_H
#define TDM_TESTS_LIB_TDM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tmpdir.h"

#endif
