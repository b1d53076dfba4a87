/* engine/base/wake.h: one thread sleeps on a 32-bit word of its own until
 * another sets it and wakes it (Linux futex(2), private to the process).
 *
 * For a waiter that lives on its caller's stack and must not be touched once
 * the caller has seen its word set: tdm_wake_set() stores the word (release),
 * and from then on only names its address to the kernel, which neither reads
 * nor writes it there. A wake that reaches a later word at the same address
 * is a spurious wake, which tdm_wake_sleep() ignores. The waker needs no lock
 * held, so a woken thread never queues on a lock its waker still holds (a
 * condition variable's broadcast under a mutex does that, and wakes every
 * waiter to find its own). */
#ifndef TDM_ENGINE_BASE_WAKE_H
#define TDM_ENGINE_BASE_WAKE_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Store value (not 0 to wake a tdm_wake_sleep()) and wake the one thread
 * sleeping on word. */
static inline void tdm_wake_set(_Atomic uint32_t *word, uint32_t value)
{
    atomic_store_explicit(word, value, memory_order_release);
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleep while word holds seen; returns at once if it does not. May return
 * spuriously: the caller loads the word again (acquire). */
static inline void tdm_wake_wait(_Atomic uint32_t *word, uint32_t seen)
{
    /* EAGAIN (the word changed before we slept) and EINTR: the caller looks again. */
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

/* Sleep until word is not 0; returns its value. */
static inline uint32_t tdm_wake_sleep(_Atomic uint32_t *word)
{
    for (;;) {
        uint32_t value = atomic_load_explicit(word, memory_order_acquire);
        if (value != 0) {
            return value;
        }
        tdm_wake_wait(word, 0);
    }
}

#endif
