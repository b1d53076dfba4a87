/* engine/base/queue.h: an intrusive doubly linked list (raft's queue.h,
 * libuv's uv__queue). The head is a struct tdm_queue whose next/prev point to
 * itself when empty. */
#ifndef TDM_ENGINE_BASE_QUEUE_H
#define TDM_ENGINE_BASE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct tdm_queue {
    struct tdm_queue *next;
    struct tdm_queue *prev;
};

#define TDM_QUEUE_DATA(e, type, field) ((type *)((char *)(e)-offsetof(type, field)))

static inline void tdm_queue_init(struct tdm_queue *q)
{
    q->next = q;
    q->prev = q;
}

static inline bool tdm_queue_empty(const struct tdm_queue *q)
{
    return q->next == q;
}

static inline void tdm_queue_insert_tail(struct tdm_queue *q, struct tdm_queue *e)
{
    e->next = q;
    e->prev = q->prev;
    e->prev->next = e;
    q->prev = e;
}

static inline void tdm_queue_remove(struct tdm_queue *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = e;
    e->prev = e;
}

static inline struct tdm_queue *tdm_queue_head(const struct tdm_queue *q)
{
    return q->next;
}

#endif
