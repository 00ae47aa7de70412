/*
 * keydir.c — the key directory: a copy-on-write B+tree of fixed-size pages (see keydir.h).
 *
 * NOTES ON THE DESIGN OF THE KEYDIR
 *
 * The keydir maps every live key of a Bitcask to the location of its newest record. It must
 * hold millions of keys in little memory, answer a GET in a few hundred nanoseconds, and let
 * a snapshot or merge worker read a frozen copy on another thread while the owner goes on
 * writing. A B+tree of 4 KiB pages with reference-counted nodes meets all three: entries sit
 * packed inside the pages (no per-key allocation, no per-key pointer), the fan-out keeps the
 * tree three or four levels deep, and a clone is one shared root whose nodes are copied only
 * when, and where, one side writes.
 *
 * Page layout. Every node, leaf or internal, is one KD_PAGE_BYTES allocation laid out as a
 * slotted page: a header, an array of slots growing up, and entries packed down from the end.
 *
 *   0        24                          data_start                         4096
 *   +--------+-----------------+---------+--------------------------------+
 *   | header | slot 0 | slot 1 |  free   | entry | hole | entry | entry   |
 *   +--------+-----------------+---------+--------------------------------+
 *   header: refs (atomic u32), is_leaf, count, data_start, live_bytes, hint_skip, first_child
 *   slot:   u16 offset of the entry in the page, u16 hint: the two key bytes that follow the
 *           hint_skip bytes every key of the node shares, big-endian and zero-padded. A binary
 *           search compares hints first and so mostly touches the slot array alone; without
 *           the skip, the keys of one leaf of a big map share their first bytes and every
 *           probe would read an entry (a cache miss) per step.
 *   entry:  payload | u16 key tag | key bytes, or an 8-byte kd_blob pointer if tag == 0xFFFF
 *   leaf payload (28 bytes):   file_id u32, offset u32, value_len u32, revision u64,
 *                              expiry_ms i64
 *   inner payload (8 bytes):   pointer to the child right of this separator
 *
 * Entries are not aligned; every multi-byte field is read and written with memcpy. Keys
 * longer than KD_INLINE_KEY_MAX bytes live out of line in an immutable reference-counted
 * kd_blob, so that copying a page copies 8 bytes per long key and bumps a counter.
 *
 * An internal node with n separators has n + 1 children: child 0 is first_child and child
 * i + 1 is the payload of separator i. Separator i is a key s with
 *     every key under child i < s <= every key under child i + 1.
 * A leaf split chooses as separator the shortest prefix of the right half's first key that
 * is greater than the left half's last key (usually 2 or 3 bytes for random keys).
 *
 * Invariants (keydir_check verifies all of them):
 *   I1. Keys in a node are strictly increasing; all share their first hint_skip bytes, and
 *       each slot's hint is key_hint() of its key's bytes after them.
 *   I2. Every key under child i of a node lies in [separator i-1, separator i), and inside the
 *       bounds inherited from the node's ancestors.
 *   I3. All leaves are at the same depth.
 *   I4. A non-root leaf holds at least one entry; a non-root internal node has at least one
 *       child; an internal root has at least two children. An empty map has root == NULL.
 *   I5. live_bytes is the sum of the entry sizes; entries lie in [data_start, KD_PAGE_BYTES)
 *       and do not overlap each other or the slot array.
 *   I6. The refs of a node (or blob) counts the handles and nodes pointing at it; it is >= 1.
 *       A node reached from a handle through nodes whose refs are all 1 is exclusive to that
 *       handle and may be changed in place; any node with refs > 1 is immutable.
 *   I7. keydir->count is the number of leaf entries reachable from its root.
 *
 * Fill. Inserts split a full page into two halves by bytes, so random inserts leave pages
 * about 70% full. Deletes do NOT borrow from siblings: moving entries between siblings
 * changes the separator in the parent, a longer separator can overflow the parent, and a
 * split in the middle of a delete would need an allocation that may fail after the map was
 * already changed. Instead a node whose used bytes fall below a quarter page is merged into
 * an adjacent sibling when both fit in one page (merging only removes a separator from the
 * parent, which can never overflow it), and an emptied node is unlinked and freed. Pages may
 * therefore stay sparse after heavy deletes; I4 is the fill invariant we keep.
 *
 * Memory. A leaf entry for a 16-byte key takes 28 + 2 + 16 bytes plus a 4-byte slot, 34
 * bytes beyond the key; at ~70% fill that is ~57 bytes per key, internal pages add under 1%
 * (their separators are short prefixes) and glibc's chunk header per 4 KiB page 0.4%.
 * bench/keydir.c measures it both by mallinfo2() and by keydir_memory(), which counts pages
 * and blobs at their requested sizes.
 *
 * Speed. A lookup in a big map costs, per level not in cache, a miss for the page header,
 * then overlapping misses for the rest of the slot array (prefetched at once, see
 * node_search) and for the first key (to test the shared prefix), then one for the entry
 * whose key finally matches; the hints keep the binary search out of the other entries.
 *
 * State changes and the functions that make them:
 *   - path_make_exclusive():  copies every shared node on the path from the root to a leaf
 *     (node_copy) and points the exclusive parent at the copy. Semantically neutral, so it
 *     may fail half-way with RC_ENOMEM and leave a valid map with the same contents.
 *   - keydir_put():           in-place update of an existing key's meta; or node_insert_at()
 *     when the leaf has room; or, after reserve_split_pages() has allocated every page the
 *     splits may need, insert_with_splits() (node_split_insert() per level, new root last).
 *     Nothing can fail after the first byte of the map is changed.
 *   - keydir_delete():        node_remove_at() on the leaf, then rebalance_after_delete()
 *     (node_detach_child() for emptied nodes, merge_siblings() for sparse ones, root collapse).
 *     Merging copies entries INTO the exclusive node on the path and only drops a reference
 *     to the sibling, so deletes allocate nothing beyond the path copy.
 *   - keydir_clone():         a new handle and root refs + 1.
 *   - node_release():         refs - 1; the thread that drops the last reference frees the
 *     node and releases its children and blobs.
 *
 * Memory ordering. Increments are relaxed: whoever increments already holds a reference, so
 * the node cannot go away. Decrements are acquire-release: release so that the holder's reads
 * happen before whatever follows the last decrement, acquire so that the thread reaching zero
 * sees every other holder's reads as done before it frees. (A release decrement followed by
 * an acquire fence only on zero would do, but ThreadSanitizer does not model fences, and on
 * x86 both compile to the same locked instruction.)
 * The writer's exclusivity test is an acquire load of refs == 1: it synchronises with the
 * release decrement of the clone that let go, so that clone's reads happen before the
 * writer's in-place changes. A node with refs == 1 on an exclusive path cannot gain a
 * reference behind the writer's back: only holders of a pointer to it could add one.
 */
#include "store/keydir.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KD_UNDER_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KD_UNDER_LSAN 1
#endif
#ifdef KD_UNDER_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/*
 * Pages hold child and blob pointers inside packed entries, at any byte offset, and
 * LeakSanitizer only recognises pointers stored at aligned addresses: to a leak check run
 * while a map is alive (libFuzzer runs one after inputs that keep memory), every page below
 * the root and every blob looks unreachable. So under the sanitizers those allocations are
 * left out of leak reports; a page or blob that really leaks still shows in the family's
 * memory count, which the unit tests check returns to zero.
 */
static void *kd_unscanned(void *p)
{
#ifdef KD_UNDER_LSAN
    if (p)
        __lsan_ignore_object(p);
#endif
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* Constants and types                                                                      */
/* ---------------------------------------------------------------------------------------- */

#define KD_PAGE_BYTES      4096u
#define KD_INLINE_KEY_MAX  256u    /* longer keys go to a kd_blob */
#define KD_KEY_TAG_BLOB    0xFFFFu /* key tag meaning "an out-of-line blob pointer follows" */
#define KD_LEAF_PAYLOAD    28u
#define KD_INNER_PAYLOAD   8u
#define KD_SLOT_BYTES      4u
#define KD_MAX_HEIGHT      40
#define KD_MERGE_BELOW     (KD_PAGE_BYTES / 4) /* used bytes under which a node seeks a merge */
#define KD_MAX_ENTRY_BYTES (KD_LEAF_PAYLOAD + 2 + KD_INLINE_KEY_MAX)
#define KD_MAX_SEPARATOR   (KD_INNER_PAYLOAD + 2 + KD_INLINE_KEY_MAX)

/* An out-of-line key. Immutable once built; shared by every page copy that refers to it. */
struct kd_blob {
    _Atomic uint32_t refs;
    uint32_t len;
    unsigned char bytes[];
};

struct kd_slot {
    uint16_t offset; /* of the entry, from the start of the page */
    uint16_t hint;   /* key_hint() of the entry's key past the node's hint_skip bytes */
};

/* The page header; slots follow it and entries fill the page from its end. */
struct kd_node {
    _Atomic uint32_t refs;
    uint8_t is_leaf;
    uint8_t reserved;
    uint16_t count;              /* slots in use */
    uint16_t data_start;         /* lowest byte used by an entry; KD_PAGE_BYTES when none */
    uint16_t live_bytes;         /* bytes of live entries (holes left by removals not counted) */
    uint16_t hint_skip;          /* every key here starts with the same hint_skip bytes (I1) */
    struct kd_node *first_child; /* internal nodes: child 0; NULL in leaves */
};

#define KD_HEADER_BYTES sizeof(struct kd_node)
#define KD_CAPACITY     (KD_PAGE_BYTES - KD_HEADER_BYTES)
/* Most slots a page can hold: inner entries are at least payload + tag + 1 key byte. */
#define KD_MAX_SLOTS (KD_CAPACITY / (KD_SLOT_BYTES + KD_INNER_PAYLOAD + 3) + 2)

/* A page-sized scratch buffer on the stack, aligned like a node. */
union kd_page_buffer {
    struct kd_node node;
    unsigned char bytes[KD_PAGE_BYTES];
};

/* Shared by a handle and all its clones: the memory counter of keydir_memory(). */
struct kd_family {
    _Atomic size_t memory_bytes;
    _Atomic uint32_t handles;
};

struct keydir {
    struct kd_node *root; /* NULL when the map is empty */
    size_t count;
    struct kd_family *family;
};

/* A key being looked for. */
struct kd_probe {
    const unsigned char *bytes;
    size_t len;
    uint16_t hint;
};

/* An entry built outside any page, waiting to be inserted. */
struct kd_entry_buf {
    unsigned char bytes[KD_MAX_ENTRY_BYTES];
    uint16_t size;
};

/* The nodes from the root (level 0) down to a leaf (level depth) visited by a writer. */
struct kd_path {
    int depth;
    struct kd_node *nodes[KD_MAX_HEIGHT];
    uint16_t child_index[KD_MAX_HEIGHT]; /* nodes[i + 1] is child child_index[i] of nodes[i] */
};

/* ---------------------------------------------------------------------------------------- */
/* Keys                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static int key_compare(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    size_t common = alen < blen ? alen : blen;
    int c = common ? memcmp(a, b, common) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/*
 * The first two bytes, zero-padded, as a big-endian number. If hint(a) < hint(b) then a < b,
 * because a zero pad sorts before any byte just as a shorter key sorts before a longer one.
 * Nodes apply it to the bytes after the prefix their keys share (hint_skip).
 */
static uint16_t key_hint(const unsigned char *key, size_t len)
{
    if (len >= 2)
        return (uint16_t)(key[0] << 8 | key[1]);
    return len == 1 ? (uint16_t)(key[0] << 8) : 0;
}

static struct kd_probe probe_make(const void *key, size_t len)
{
    struct kd_probe p = {key, len, key_hint(key, len)};
    return p;
}

static void blob_retain(struct kd_blob *blob)
{
    atomic_fetch_add_explicit(&blob->refs, 1, memory_order_relaxed);
}

static void blob_release(struct kd_family *family, struct kd_blob *blob)
{
    if (atomic_fetch_sub_explicit(&blob->refs, 1, memory_order_acq_rel) != 1)
        return;
    atomic_fetch_sub_explicit(&family->memory_bytes, sizeof *blob + blob->len,
                              memory_order_relaxed);
    rc_free(blob);
}

static struct kd_blob *blob_new(struct kd_family *family, const void *key, size_t len)
{
    struct kd_blob *blob = kd_unscanned(rc_malloc(sizeof *blob + len));
    if (!blob)
        return NULL;
    atomic_init(&blob->refs, 1);
    blob->len = (uint32_t)len;
    memcpy(blob->bytes, key, len);
    atomic_fetch_add_explicit(&family->memory_bytes, sizeof *blob + len, memory_order_relaxed);
    return blob;
}

/* ---------------------------------------------------------------------------------------- */
/* Entries: unaligned records inside a page                                                 */
/* ---------------------------------------------------------------------------------------- */

static inline size_t payload_bytes(const struct kd_node *n)
{
    return n->is_leaf ? KD_LEAF_PAYLOAD : KD_INNER_PAYLOAD;
}

static inline struct kd_slot *node_slots(const struct kd_node *n)
{
    return (struct kd_slot *)((unsigned char *)n + KD_HEADER_BYTES);
}

static inline unsigned char *node_entry(const struct kd_node *n, size_t i)
{
    return (unsigned char *)n + node_slots(n)[i].offset;
}

static inline uint16_t entry_key_tag(const unsigned char *entry, size_t payload)
{
    uint16_t tag;
    memcpy(&tag, entry + payload, sizeof tag);
    return tag;
}

/* NULL when the entry's key is inline. */
static inline struct kd_blob *entry_blob(const unsigned char *entry, size_t payload)
{
    struct kd_blob *blob = NULL;
    if (entry_key_tag(entry, payload) == KD_KEY_TAG_BLOB)
        memcpy(&blob, entry + payload + 2, sizeof blob);
    return blob;
}

static inline const unsigned char *entry_key(const unsigned char *entry, size_t payload,
                                             size_t *len)
{
    uint16_t tag = entry_key_tag(entry, payload);
    if (tag == KD_KEY_TAG_BLOB) {
        struct kd_blob *blob;
        memcpy(&blob, entry + payload + 2, sizeof blob);
        *len = blob->len;
        return blob->bytes;
    }
    *len = tag;
    return entry + payload + 2;
}

static inline size_t entry_size(const unsigned char *entry, size_t payload)
{
    uint16_t tag = entry_key_tag(entry, payload);
    return payload + 2 + (tag == KD_KEY_TAG_BLOB ? sizeof(struct kd_blob *) : tag);
}

static inline struct kd_node *entry_child(const unsigned char *entry)
{
    struct kd_node *child;
    memcpy(&child, entry, sizeof child);
    return child;
}

static inline void entry_set_child(unsigned char *entry, struct kd_node *child)
{
    memcpy(entry, &child, sizeof child);
}

static void meta_encode(unsigned char *entry, const struct kd_meta *m)
{
    memcpy(entry + 0, &m->file_id, 4);
    memcpy(entry + 4, &m->offset, 4);
    memcpy(entry + 8, &m->value_len, 4);
    memcpy(entry + 12, &m->revision, 8);
    memcpy(entry + 20, &m->expiry_ms, 8);
}

static void meta_decode(const unsigned char *entry, struct kd_meta *m)
{
    memcpy(&m->file_id, entry + 0, 4);
    memcpy(&m->offset, entry + 4, 4);
    memcpy(&m->value_len, entry + 8, 4);
    memcpy(&m->revision, entry + 12, 8);
    memcpy(&m->expiry_ms, entry + 20, 8);
}

/*
 * Writes the key part of an entry (tag + inline bytes, or tag + blob pointer) after `payload`
 * bytes and returns the entry's full size. The blob reference, if any, moves into the entry.
 */
static uint16_t entry_build_key(struct kd_entry_buf *e, size_t payload, const unsigned char *key,
                                size_t len, struct kd_blob *blob)
{
    uint16_t tag = blob ? (uint16_t)KD_KEY_TAG_BLOB : (uint16_t)len;
    memcpy(e->bytes + payload, &tag, 2);
    if (blob)
        memcpy(e->bytes + payload + 2, &blob, sizeof blob);
    else if (len)
        memcpy(e->bytes + payload + 2, key, len);
    e->size = (uint16_t)(payload + 2 + (blob ? sizeof blob : len));
    return e->size;
}

/* ---------------------------------------------------------------------------------------- */
/* Nodes: allocation, reference counts, copy-on-write                                       */
/* ---------------------------------------------------------------------------------------- */

static void page_init(struct kd_node *n, bool is_leaf, struct kd_node *first_child)
{
    n->is_leaf = is_leaf;
    n->reserved = 0;
    n->count = 0;
    n->data_start = KD_PAGE_BYTES;
    n->live_bytes = 0;
    n->hint_skip = 0;
    n->first_child = first_child;
}

static struct kd_node *node_new(struct kd_family *family, bool is_leaf)
{
    struct kd_node *n = kd_unscanned(rc_malloc(KD_PAGE_BYTES));
    if (!n)
        return NULL;
    atomic_init(&n->refs, 1);
    page_init(n, is_leaf, NULL);
    atomic_fetch_add_explicit(&family->memory_bytes, KD_PAGE_BYTES, memory_order_relaxed);
    return n;
}

/* Frees the page alone; its children and blobs must have been released or handed over. */
static void node_free_page(struct kd_family *family, struct kd_node *n)
{
    atomic_fetch_sub_explicit(&family->memory_bytes, KD_PAGE_BYTES, memory_order_relaxed);
    rc_free(n);
}

static inline bool node_is_exclusive(const struct kd_node *n)
{
    return atomic_load_explicit(&n->refs, memory_order_acquire) == 1;
}

static inline void node_retain(struct kd_node *n)
{
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}

/* Adds one reference to every child and blob the page points at (it is being duplicated). */
static void node_retain_contents(const struct kd_node *n)
{
    size_t payload = payload_bytes(n);
    if (!n->is_leaf && n->first_child)
        node_retain(n->first_child);
    for (size_t i = 0; i < n->count; i++) {
        const unsigned char *e = node_entry(n, i);
        struct kd_blob *blob = entry_blob(e, payload);
        if (blob)
            blob_retain(blob);
        if (!n->is_leaf)
            node_retain(entry_child(e));
    }
}

static void node_release(struct kd_family *family, struct kd_node *n)
{
    if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
        return;
    size_t payload = payload_bytes(n);
    if (!n->is_leaf && n->first_child)
        node_release(family, n->first_child);
    for (size_t i = 0; i < n->count; i++) {
        const unsigned char *e = node_entry(n, i);
        struct kd_blob *blob = entry_blob(e, payload);
        if (blob)
            blob_release(family, blob);
        if (!n->is_leaf)
            node_release(family, entry_child(e));
    }
    node_free_page(family, n);
}

/* Copies the used parts of a page (header, slots, entry area); refs is left alone. */
static void page_copy_contents(struct kd_node *dst, const struct kd_node *src)
{
    size_t skip = sizeof dst->refs;
    size_t head = KD_HEADER_BYTES + (size_t)src->count * KD_SLOT_BYTES;
    memcpy((unsigned char *)dst + skip, (const unsigned char *)src + skip, head - skip);
    memcpy((unsigned char *)dst + src->data_start, (const unsigned char *)src + src->data_start,
           KD_PAGE_BYTES - src->data_start);
}

static struct kd_node *node_copy(struct kd_family *family, const struct kd_node *src)
{
    struct kd_node *copy = kd_unscanned(rc_malloc(KD_PAGE_BYTES));
    if (!copy)
        return NULL;
    atomic_init(&copy->refs, 1);
    page_copy_contents(copy, src);
    node_retain_contents(copy);
    atomic_fetch_add_explicit(&family->memory_bytes, KD_PAGE_BYTES, memory_order_relaxed);
    return copy;
}

static inline struct kd_node *node_child(const struct kd_node *n, size_t c)
{
    return c == 0 ? n->first_child : entry_child(node_entry(n, c - 1));
}

static inline void node_set_child(struct kd_node *n, size_t c, struct kd_node *child)
{
    if (c == 0)
        n->first_child = child;
    else
        entry_set_child(node_entry(n, c - 1), child);
}

/* Bytes of the page in use by slots and live entries. */
static inline size_t node_used(const struct kd_node *n)
{
    return (size_t)n->count * KD_SLOT_BYTES + n->live_bytes;
}

static inline bool node_fits(const struct kd_node *n, size_t entry_bytes)
{
    return node_used(n) + KD_SLOT_BYTES + entry_bytes <= KD_CAPACITY;
}

/* ---------------------------------------------------------------------------------------- */
/* Search within a page                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Index of the first entry whose key is >= the probe; *found tells whether it is equal. */
static size_t node_search(const struct kd_node *n, const struct kd_probe *p, bool *found)
{
    const struct kd_slot *slots = node_slots(n);
    size_t payload = payload_bytes(n);
    size_t lo = 0, hi = n->count;
    uint16_t hint = p->hint;
    *found = false;
    if (hi == 0)
        return 0;
    if (n->hint_skip) {
        /* Hints describe the bytes after the prefix all keys here share. A probe without
         * that prefix sorts before or after every key; otherwise take its bytes after it. */
        size_t skip = n->hint_skip, len0;
        const unsigned char *key0 = entry_key(node_entry(n, 0), payload, &len0);
        size_t common = p->len < skip ? p->len : skip;
        int c = common ? memcmp(p->bytes, key0, common) : 0;
        if (c < 0 || (c == 0 && p->len < skip))
            return 0;
        if (c > 0)
            return hi;
        hint = key_hint(p->bytes + skip, p->len - skip);
    }
    /* The search below touches the slot array's cache lines one after another, each a likely
     * miss in a big map; asking for all of them now lets the misses overlap. */
    const char *slot_bytes = (const char *)slots;
    for (size_t line = 64; line < hi * sizeof *slots; line += 64)
        __builtin_prefetch(slot_bytes + line);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c;
        if (slots[mid].hint != hint) {
            c = slots[mid].hint < hint ? -1 : 1;
        } else {
            size_t len;
            const unsigned char *key =
                entry_key((const unsigned char *)n + slots[mid].offset, payload, &len);
            c = key_compare(key, len, p->bytes, p->len);
        }
        if (c < 0) {
            lo = mid + 1;
        } else if (c > 0) {
            hi = mid;
        } else {
            *found = true;
            return mid;
        }
    }
    return lo;
}

/* The child of an internal node whose key range holds the probe: separators <= key go left. */
static inline size_t node_child_index(const struct kd_node *n, const struct kd_probe *p)
{
    bool found;
    size_t i = node_search(n, p, &found);
    return found ? i + 1 : i;
}

static const unsigned char *leaf_find(const struct kd_node *n, const struct kd_probe *p)
{
    if (!n)
        return NULL;
    while (!n->is_leaf)
        n = node_child(n, node_child_index(n, p));
    bool found;
    size_t i = node_search(n, p, &found);
    return found ? node_entry(n, i) : NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Changing one page: insert, remove, rebuild                                               */
/* ---------------------------------------------------------------------------------------- */

static size_t common_prefix(const unsigned char *a, size_t alen, const unsigned char *b,
                            size_t blen)
{
    size_t i = 0;
    while (i < alen && i < blen && a[i] == b[i])
        i++;
    return i;
}

/* Recomputes hint_skip (the common prefix of the first and last keys, hence of all keys)
 * and every slot's hint. Run after a page is rebuilt or its first or last key changed. */
static void page_refresh_hints(struct kd_node *n)
{
    size_t payload = payload_bytes(n), first_len, last_len;
    if (n->count == 0) {
        n->hint_skip = 0;
        return;
    }
    const unsigned char *first = entry_key(node_entry(n, 0), payload, &first_len);
    const unsigned char *last = entry_key(node_entry(n, n->count - 1u), payload, &last_len);
    size_t skip = common_prefix(first, first_len, last, last_len);
    n->hint_skip = (uint16_t)(skip > UINT16_MAX ? UINT16_MAX : skip);
    for (size_t i = 0; i < n->count; i++) {
        size_t len;
        const unsigned char *key = entry_key(node_entry(n, i), payload, &len);
        node_slots(n)[i].hint = key_hint(key + n->hint_skip, len - n->hint_skip);
    }
}

/* Appends an entry after the last slot of a page being built in key order; the builder
 * calls page_refresh_hints() when done. */
static void page_append(struct kd_node *n, const unsigned char *entry, size_t size)
{
    n->data_start = (uint16_t)(n->data_start - size);
    memcpy((unsigned char *)n + n->data_start, entry, size);
    struct kd_slot *slot = &node_slots(n)[n->count++];
    slot->offset = n->data_start;
    slot->hint = 0;
    n->live_bytes = (uint16_t)(n->live_bytes + size);
}

static void page_append_from(struct kd_node *dst, const struct kd_node *src, size_t i)
{
    const unsigned char *e = node_entry(src, i);
    page_append(dst, e, entry_size(e, payload_bytes(src)));
}

/* Squeezes out the holes left by removed entries, so free space is contiguous again. */
static void node_compact(struct kd_node *n)
{
    union kd_page_buffer buf;
    page_init(&buf.node, n->is_leaf, n->first_child);
    for (size_t i = 0; i < n->count; i++)
        page_append_from(&buf.node, n, i);
    buf.node.hint_skip = n->hint_skip; /* same keys, same prefix, same hints */
    for (size_t i = 0; i < n->count; i++)
        node_slots(&buf.node)[i].hint = node_slots(n)[i].hint;
    page_copy_contents(n, &buf.node);
}

/* Inserts an entry as slot i; the caller checked node_fits(). */
static void node_insert_at(struct kd_node *n, size_t i, const struct kd_entry_buf *e)
{
    size_t slots_end = KD_HEADER_BYTES + ((size_t)n->count + 1) * KD_SLOT_BYTES;
    if (slots_end + e->size > n->data_start)
        node_compact(n);
    n->data_start = (uint16_t)(n->data_start - e->size);
    memcpy((unsigned char *)n + n->data_start, e->bytes, e->size);
    struct kd_slot *slots = node_slots(n);
    memmove(&slots[i + 1], &slots[i], (n->count - i) * sizeof *slots);
    slots[i].offset = n->data_start;
    n->count++;
    n->live_bytes = (uint16_t)(n->live_bytes + e->size);

    /* A key inserted between two others shares their prefix; one at either end may not. */
    size_t payload = payload_bytes(n), len, other_len;
    const unsigned char *key = entry_key(e->bytes, payload, &len);
    if (n->count == 1) {
        page_refresh_hints(n);
        return;
    }
    if (i == 0 || i == n->count - 1u) {
        const unsigned char *other = entry_key(node_entry(n, i == 0 ? 1 : 0), payload, &other_len);
        if (common_prefix(key, len, other, other_len) < n->hint_skip) {
            page_refresh_hints(n);
            return;
        }
    }
    slots[i].hint = key_hint(key + n->hint_skip, len - n->hint_skip);
}

/* Removes slot i. The entry's blob and child references are the caller's business. */
static void node_remove_at(struct kd_node *n, size_t i)
{
    struct kd_slot *slots = node_slots(n);
    size_t size = entry_size(node_entry(n, i), payload_bytes(n));
    if (slots[i].offset == n->data_start) /* the lowest entry: reclaim its bytes at once */
        n->data_start = (uint16_t)(n->data_start + size);
    memmove(&slots[i], &slots[i + 1], (n->count - i - 1) * sizeof *slots);
    n->count--;
    n->live_bytes = (uint16_t)(n->live_bytes - size);
    if (n->count == 0)
        n->data_start = KD_PAGE_BYTES;
}

/*
 * Splits a full node while inserting `pending` as its slot `index`: the lower half stays in
 * `node`, the upper half goes to the empty page `right`, and *separator receives the entry
 * to insert into the parent (payload = right). Allocates nothing.
 */
static void node_split_insert(struct kd_node *node, size_t index,
                              const struct kd_entry_buf *pending, struct kd_node *right,
                              struct kd_entry_buf *separator)
{
    const unsigned char *entries[KD_MAX_SLOTS];
    uint16_t sizes[KD_MAX_SLOTS];
    size_t payload = payload_bytes(node);
    size_t n = (size_t)node->count + 1, total = 0;

    for (size_t i = 0, j = 0; i < n; i++) {
        if (i == index) {
            entries[i] = pending->bytes;
            sizes[i] = pending->size;
            continue;
        }
        entries[i] = node_entry(node, j);
        sizes[i] = (uint16_t)entry_size(entries[i], payload);
        j++;
    }
    for (size_t i = 0; i < n; i++)
        total += sizes[i] + KD_SLOT_BYTES;

    /* Split point by bytes: the left half takes entries while it stays under half. */
    size_t split = 0, acc = 0;
    while (split < n && acc + sizes[split] + KD_SLOT_BYTES <= total / 2)
        acc += sizes[split++] + KD_SLOT_BYTES;
    /* Leaves need one entry on each side; an internal node also gives one entry away. */
    size_t min_split = 1, max_split = node->is_leaf ? n - 1 : n - 2;
    if (split < min_split)
        split = min_split;
    if (split > max_split)
        split = max_split;

    union kd_page_buffer left;
    page_init(&left.node, node->is_leaf, node->first_child);
    for (size_t i = 0; i < split; i++)
        page_append(&left.node, entries[i], sizes[i]);
    page_refresh_hints(&left.node);

    page_init(right, node->is_leaf, NULL);
    size_t right_from = split;
    if (!node->is_leaf) {
        /* Entry `split` moves up: its child becomes right's first child, its key the
         * separator (the blob reference, if any, moves with it). */
        right->first_child = entry_child(entries[split]);
        memcpy(separator->bytes, entries[split], sizes[split]);
        separator->size = sizes[split];
        right_from = split + 1;
    }
    for (size_t i = right_from; i < n; i++)
        page_append(right, entries[i], sizes[i]);
    page_refresh_hints(right);

    if (node->is_leaf) {
        /* Shortest prefix of right's first key that is greater than left's last key. */
        size_t last_len, first_len;
        const unsigned char *last = entry_key(entries[split - 1], payload, &last_len);
        const unsigned char *first = entry_key(entries[split], payload, &first_len);
        /* The prefix is at most first_len long because last < first. */
        size_t sep_len = common_prefix(last, last_len, first, first_len) + 1;
        struct kd_blob *blob = NULL;
        if (sep_len > KD_INLINE_KEY_MAX) {
            /* Too long to sit inline: share the whole first key instead; still a valid
             * separator (last < first <= first). */
            blob = entry_blob(entries[split], payload);
            blob_retain(blob);
            sep_len = first_len;
        }
        entry_build_key(separator, KD_INNER_PAYLOAD, first, sep_len, blob);
    }
    entry_set_child(separator->bytes, right);
    page_copy_contents(node, &left.node);
}

/* ---------------------------------------------------------------------------------------- */
/* Write paths                                                                              */
/* ---------------------------------------------------------------------------------------- */

/*
 * Walks from the root to the leaf for the probe, copying every shared node so that the
 * whole path is exclusive to this handle. On RC_ENOMEM the map holds the same contents
 * (some nodes may already be private copies, which is invisible).
 */
static int path_make_exclusive(struct keydir *kd, const struct kd_probe *p, struct kd_path *path)
{
    struct kd_node *parent = NULL;
    size_t c = 0;
    int level = 0;
    for (;;) {
        struct kd_node *n = parent ? node_child(parent, c) : kd->root;
        if (!node_is_exclusive(n)) {
            struct kd_node *copy = node_copy(kd->family, n);
            if (!copy)
                return RC_ENOMEM;
            if (parent)
                node_set_child(parent, c, copy);
            else
                kd->root = copy;
            node_release(kd->family, n); /* our old reference; a clone keeps the original */
            n = copy;
        }
        if (level >= KD_MAX_HEIGHT)
            return RC_ENOMEM; /* cannot happen below 2^100 keys; refuse rather than overrun */
        path->nodes[level] = n;
        if (n->is_leaf) {
            path->depth = level;
            return 0;
        }
        c = node_child_index(n, p);
        path->child_index[level] = (uint16_t)c;
        parent = n;
        level++;
    }
}

/*
 * Allocates every page an insert into the full leaf of `path` can need: one per level that
 * may split, plus a new root if the root may split. A parent with room for the largest
 * possible separator stops the count, so the estimate is never short.
 */
static int reserve_split_pages(struct keydir *kd, const struct kd_path *path,
                               struct kd_node **spares, int *spare_count)
{
    int need = 1;
    for (int level = path->depth;; level--) {
        if (level == 0) {
            need++; /* the root splits: a new root above it */
            break;
        }
        if (node_fits(path->nodes[level - 1], KD_MAX_SEPARATOR))
            break;
        need++;
    }
    for (int i = 0; i < need; i++) {
        /* Leaf or internal is decided when used; page_init runs again then. */
        spares[i] = node_new(kd->family, true);
        if (!spares[i]) {
            while (i-- > 0)
                node_free_page(kd->family, spares[i]);
            return RC_ENOMEM;
        }
    }
    *spare_count = need;
    return 0;
}

/* Inserts `entry` as slot `index` of the path's leaf, splitting upwards with spare pages. */
static void insert_with_splits(struct keydir *kd, struct kd_path *path, size_t index,
                               struct kd_entry_buf *entry, struct kd_node **spares,
                               int *spare_count)
{
    struct kd_entry_buf separators[2];
    struct kd_entry_buf *pending = entry;
    int level = path->depth;
    for (;;) {
        struct kd_node *n = path->nodes[level];
        if (node_fits(n, pending->size)) {
            node_insert_at(n, index, pending);
            return;
        }
        struct kd_node *right = spares[--*spare_count];
        struct kd_entry_buf *separator =
            pending == &separators[0] ? &separators[1] : &separators[0];
        node_split_insert(n, index, pending, right, separator);
        pending = separator;
        if (level == 0) {
            struct kd_node *root = spares[--*spare_count];
            page_init(root, false, n);
            node_insert_at(root, 0, pending);
            kd->root = root;
            return;
        }
        level--;
        index = path->child_index[level];
    }
}

/* Unlinks child c from an internal node (dropping the separator that bounded it). The
 * child's own reference is not released: the caller frees or hands it over. */
static void node_detach_child(struct kd_family *family, struct kd_node *parent, size_t c)
{
    size_t slot;
    if (c == 0) {
        if (parent->count == 0) {
            parent->first_child = NULL;
            return;
        }
        parent->first_child = entry_child(node_entry(parent, 0));
        slot = 0;
    } else {
        slot = c - 1;
    }
    struct kd_blob *blob = entry_blob(node_entry(parent, slot), KD_INNER_PAYLOAD);
    if (blob)
        blob_release(family, blob);
    node_remove_at(parent, slot);
}

/*
 * Merges children k and k + 1 of `parent` into `into`, which is one of them and exclusive;
 * the other may be shared with a clone, so it is only read and then released. For internal
 * nodes the parent's separator k comes down between the two halves.
 */
static void merge_siblings(struct kd_family *family, struct kd_node *parent, size_t k,
                           struct kd_node *into)
{
    struct kd_node *left = node_child(parent, k), *right = node_child(parent, k + 1);
    struct kd_node *other = into == left ? right : left;
    unsigned char *sep = node_entry(parent, k);
    union kd_page_buffer buf;

    page_init(&buf.node, left->is_leaf, left->first_child);
    for (size_t i = 0; i < left->count; i++)
        page_append_from(&buf.node, left, i);
    if (!left->is_leaf) {
        unsigned char down[KD_MAX_SEPARATOR];
        size_t size = entry_size(sep, KD_INNER_PAYLOAD);
        memcpy(down, sep, size);
        entry_set_child(down, right->first_child);
        page_append(&buf.node, down, size);
    }
    for (size_t i = 0; i < right->count; i++)
        page_append_from(&buf.node, right, i);
    page_refresh_hints(&buf.node);

    /* The merged page now refers to everything `other` refers to; `other` keeps its own
     * references until it is released below. */
    node_retain_contents(other);
    page_copy_contents(into, &buf.node);

    /* The separator's key moved into the merged internal node; a leaf merge drops it. */
    struct kd_blob *blob = entry_blob(sep, KD_INNER_PAYLOAD);
    if (blob && left->is_leaf)
        blob_release(family, blob);
    node_remove_at(parent, k);
    node_set_child(parent, k, into);
    node_release(family, other);
}

static bool merge_fits(const struct kd_node *parent, size_t k, const struct kd_node *a,
                       const struct kd_node *b)
{
    size_t bytes = node_used(a) + node_used(b);
    if (!a->is_leaf)
        bytes += KD_SLOT_BYTES + entry_size(node_entry(parent, k), KD_INNER_PAYLOAD);
    return bytes <= KD_CAPACITY;
}

/*
 * After an entry left the path's leaf: unlink emptied nodes, merge sparse ones into a
 * sibling when they fit together, then drop root levels that have a single child.
 * Allocates nothing.
 */
static void rebalance_after_delete(struct keydir *kd, struct kd_path *path)
{
    for (int level = path->depth; level > 0; level--) {
        struct kd_node *n = path->nodes[level], *parent = path->nodes[level - 1];
        size_t c = path->child_index[level - 1];
        bool empty = n->is_leaf ? n->count == 0 : n->first_child == NULL;
        if (empty) {
            node_detach_child(kd->family, parent, c);
            node_free_page(kd->family, n);
            continue;
        }
        if (node_used(n) >= KD_MERGE_BELOW || parent->count == 0)
            break;
        /* Prefer the left sibling, fall back to the right one. */
        if (c > 0 && merge_fits(parent, c - 1, node_child(parent, c - 1), n))
            merge_siblings(kd->family, parent, c - 1, n);
        else if (c < parent->count && merge_fits(parent, c, n, node_child(parent, c + 1)))
            merge_siblings(kd->family, parent, c, n);
        else
            break;
    }
    struct kd_node *root = kd->root;
    while (!root->is_leaf && root->count == 0) {
        /* The only child inherits the root's reference from the handle. */
        struct kd_node *only = root->first_child;
        node_free_page(kd->family, root);
        root = only;
        if (!root)
            break;
    }
    if (root && root->is_leaf && root->count == 0) {
        node_free_page(kd->family, root);
        root = NULL;
    }
    kd->root = root;
}

/* ---------------------------------------------------------------------------------------- */
/* Public API: lifecycle                                                                    */
/* ---------------------------------------------------------------------------------------- */

int keydir_new(struct keydir **out)
{
    struct keydir *kd = rc_malloc(sizeof *kd);
    if (!kd)
        return RC_ENOMEM;
    kd->family = rc_malloc(sizeof *kd->family);
    if (!kd->family) {
        rc_free(kd);
        return RC_ENOMEM;
    }
    atomic_init(&kd->family->memory_bytes, 0);
    atomic_init(&kd->family->handles, 1);
    kd->root = NULL;
    kd->count = 0;
    *out = kd;
    return 0;
}

void keydir_free(struct keydir *kd)
{
    if (!kd)
        return;
    if (kd->root)
        node_release(kd->family, kd->root);
    if (atomic_fetch_sub_explicit(&kd->family->handles, 1, memory_order_acq_rel) == 1)
        rc_free(kd->family);
    rc_free(kd);
}

int keydir_clone(const struct keydir *kd, struct keydir **out)
{
    struct keydir *clone = rc_malloc(sizeof *clone);
    if (!clone)
        return RC_ENOMEM;
    clone->family = kd->family;
    atomic_fetch_add_explicit(&kd->family->handles, 1, memory_order_relaxed);
    clone->root = kd->root;
    if (clone->root)
        node_retain(clone->root);
    clone->count = kd->count;
    *out = clone;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Public API: point operations                                                             */
/* ---------------------------------------------------------------------------------------- */

int keydir_get(const struct keydir *kd, const void *key, size_t len, struct kd_meta *out)
{
    struct kd_probe p = probe_make(key, len);
    const unsigned char *e = leaf_find(kd->root, &p);
    if (!e)
        return RC_ENOTFOUND;
    if (out)
        meta_decode(e, out);
    return 0;
}

int keydir_put(struct keydir *kd, const void *key, size_t len, const struct kd_meta *meta,
               struct kd_meta *old, bool *replaced)
{
    if (len > KEYDIR_MAX_KEY)
        return RC_EINVAL;
    struct kd_probe p = probe_make(key, len);
    bool created_root = false;
    if (!kd->root) {
        kd->root = node_new(kd->family, true);
        if (!kd->root)
            return RC_ENOMEM;
        created_root = true;
    }

    struct kd_path path;
    int rc = path_make_exclusive(kd, &p, &path);
    if (rc)
        return rc; /* a new root cannot be shared, so created_root implies success here */
    struct kd_node *leaf = path.nodes[path.depth];
    bool found;
    size_t index = node_search(leaf, &p, &found);
    if (found) {
        unsigned char *e = node_entry(leaf, index);
        if (old)
            meta_decode(e, old);
        meta_encode(e, meta);
        if (replaced)
            *replaced = true;
        return 0;
    }

    struct kd_entry_buf entry;
    struct kd_blob *blob = NULL;
    if (len > KD_INLINE_KEY_MAX) {
        blob = blob_new(kd->family, key, len);
        if (!blob) {
            if (created_root) {
                node_free_page(kd->family, kd->root);
                kd->root = NULL;
            }
            return RC_ENOMEM;
        }
    }
    meta_encode(entry.bytes, meta);
    entry_build_key(&entry, KD_LEAF_PAYLOAD, key, len, blob);

    if (node_fits(leaf, entry.size)) {
        node_insert_at(leaf, index, &entry);
    } else {
        struct kd_node *spares[KD_MAX_HEIGHT + 1];
        int spare_count = 0;
        rc = reserve_split_pages(kd, &path, spares, &spare_count);
        if (rc) {
            if (blob)
                blob_release(kd->family, blob);
            return rc;
        }
        insert_with_splits(kd, &path, index, &entry, spares, &spare_count);
        while (spare_count > 0)
            node_free_page(kd->family, spares[--spare_count]);
    }
    kd->count++;
    if (replaced)
        *replaced = false;
    return 0;
}

int keydir_delete(struct keydir *kd, const void *key, size_t len, struct kd_meta *old)
{
    struct kd_probe p = probe_make(key, len);
    /* A read-only look first: deleting a missing key must not copy shared nodes. */
    if (!leaf_find(kd->root, &p))
        return RC_ENOTFOUND;
    struct kd_path path;
    int rc = path_make_exclusive(kd, &p, &path);
    if (rc)
        return rc;
    struct kd_node *leaf = path.nodes[path.depth];
    bool found;
    size_t index = node_search(leaf, &p, &found);
    unsigned char *e = node_entry(leaf, index);
    if (old)
        meta_decode(e, old);
    struct kd_blob *blob = entry_blob(e, KD_LEAF_PAYLOAD);
    if (blob)
        blob_release(kd->family, blob);
    node_remove_at(leaf, index);
    kd->count--;
    rebalance_after_delete(kd, &path);
    return 0;
}

size_t keydir_count(const struct keydir *kd)
{
    return kd->count;
}

size_t keydir_memory(const struct keydir *kd)
{
    return atomic_load_explicit(&kd->family->memory_bytes, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API: scan and sample                                                              */
/* ---------------------------------------------------------------------------------------- */

struct scan_state {
    const struct kd_bound *lo, *hi;
    struct kd_probe lo_probe, hi_probe;
    bool reverse;
    kd_scan_fn fn;
    void *ctx;
};

static int emit_entry(const struct kd_node *leaf, size_t i, const struct scan_state *s)
{
    const unsigned char *e = node_entry(leaf, i);
    struct kd_meta meta;
    size_t len;
    const unsigned char *key = entry_key(e, KD_LEAF_PAYLOAD, &len);
    meta_decode(e, &meta);
    return s->fn(key, len, &meta, s->ctx);
}

static int scan_node(const struct kd_node *n, const struct scan_state *s)
{
    size_t first, end; /* the half-open range of slots (leaf) or children (internal) */
    if (n->is_leaf) {
        bool found;
        first = 0;
        end = n->count;
        if (s->lo->kind != KD_BOUND_OPEN) {
            first = node_search(n, &s->lo_probe, &found);
            if (found && s->lo->kind == KD_BOUND_EXCLUSIVE)
                first++;
        }
        if (s->hi->kind != KD_BOUND_OPEN) {
            end = node_search(n, &s->hi_probe, &found);
            if (found && s->hi->kind == KD_BOUND_INCLUSIVE)
                end++;
        }
    } else {
        first = s->lo->kind == KD_BOUND_OPEN ? 0 : node_child_index(n, &s->lo_probe);
        end = (s->hi->kind == KD_BOUND_OPEN ? n->count : node_child_index(n, &s->hi_probe)) + 1;
    }
    for (size_t k = 0; first + k < end; k++) {
        size_t i = s->reverse ? end - 1 - k : first + k;
        int rc = n->is_leaf ? emit_entry(n, i, s) : scan_node(node_child(n, i), s);
        if (rc)
            return rc;
    }
    return 0;
}

/* A NULL bound is taken as KD_BOUND_OPEN, a convenience beyond what keydir.h promises. */
int keydir_scan(const struct keydir *kd, const struct kd_bound *lo, const struct kd_bound *hi,
                bool reverse, kd_scan_fn fn, void *ctx)
{
    static const struct kd_bound open = {KD_BOUND_OPEN, NULL, 0};
    struct scan_state s = {
        .lo = lo ? lo : &open, .hi = hi ? hi : &open, .reverse = reverse, .fn = fn, .ctx = ctx};
    if (s.lo->kind != KD_BOUND_OPEN)
        s.lo_probe = probe_make(s.lo->key, s.lo->len);
    if (s.hi->kind != KD_BOUND_OPEN)
        s.hi_probe = probe_make(s.hi->key, s.hi->len);
    return kd->root ? scan_node(kd->root, &s) : 0;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int keydir_sample(const struct keydir *kd, uint64_t r, kd_scan_fn fn, void *ctx)
{
    const struct kd_node *n = kd->root;
    if (!n)
        return RC_ENOTFOUND;
    /* Each level draws a fresh mix of r, so deep trees do not run out of randomness. */
    while (!n->is_leaf) {
        r = mix64(r);
        n = node_child(n, r % ((uint64_t)n->count + 1));
    }
    r = mix64(r);
    struct scan_state s = {.fn = fn, .ctx = ctx};
    return emit_entry(n, r % n->count, &s);
}

/* ---------------------------------------------------------------------------------------- */
/* Invariant checker (tests)                                                                */
/* ---------------------------------------------------------------------------------------- */

struct check_state {
    int leaf_depth; /* -1 until the first leaf is seen */
    size_t keys;
};

#define CHECK_FAIL(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "keydir_check: " __VA_ARGS__);                                             \
        fputc('\n', stderr);                                                                       \
        return RC_ECORRUPT;                                                                        \
    } while (0)

/* I1, I5 and the bounds part of I2 for one page; lo/hi NULL mean unbounded. */
static int check_page(const struct kd_node *n, const unsigned char *lo, size_t lo_len,
                      const unsigned char *hi, size_t hi_len, bool has_lo, bool has_hi)
{
    unsigned char used[KD_PAGE_BYTES / 8] = {0};
    size_t payload = payload_bytes(n), live = 0;
    size_t slots_end = KD_HEADER_BYTES + (size_t)n->count * KD_SLOT_BYTES;
    if (slots_end > n->data_start || n->data_start > KD_PAGE_BYTES)
        CHECK_FAIL("page %p: slots end at %zu, data starts at %u", (void *)n, slots_end,
                   n->data_start);
    const unsigned char *prev = NULL;
    size_t prev_len = 0;
    for (size_t i = 0; i < n->count; i++) {
        size_t off = node_slots(n)[i].offset;
        if (off < n->data_start || off + payload + 2 > KD_PAGE_BYTES)
            CHECK_FAIL("page %p slot %zu: offset %zu out of the entry area", (void *)n, i, off);
        const unsigned char *e = node_entry(n, i);
        size_t size = entry_size(e, payload);
        if (off + size > KD_PAGE_BYTES)
            CHECK_FAIL("page %p slot %zu: entry runs past the page", (void *)n, i);
        for (size_t b = off; b < off + size; b++) {
            if (used[b / 8] & (1u << (b % 8)))
                CHECK_FAIL("page %p slot %zu: entries overlap at byte %zu", (void *)n, i, b);
            used[b / 8] |= (unsigned char)(1u << (b % 8));
        }
        live += size;
        struct kd_blob *blob = entry_blob(e, payload);
        if (blob && (atomic_load(&blob->refs) < 1 || blob->len <= KD_INLINE_KEY_MAX))
            CHECK_FAIL("page %p slot %zu: bad blob (refs %u, len %u)", (void *)n, i,
                       atomic_load(&blob->refs), blob->len);
        size_t len;
        const unsigned char *key = entry_key(e, payload, &len);
        size_t skip = n->hint_skip, len0;
        const unsigned char *key0 = entry_key(node_entry(n, 0), payload, &len0);
        if (len < skip || memcmp(key, key0, skip) != 0)
            CHECK_FAIL("page %p slot %zu: key lacks the node's %zu-byte prefix", (void *)n, i,
                       skip);
        if (node_slots(n)[i].hint != key_hint(key + skip, len - skip))
            CHECK_FAIL("page %p slot %zu: stale hint", (void *)n, i);
        if (prev && key_compare(prev, prev_len, key, len) >= 0)
            CHECK_FAIL("page %p slot %zu: keys out of order", (void *)n, i);
        if (has_lo && key_compare(key, len, lo, lo_len) < 0)
            CHECK_FAIL("page %p slot %zu: key below the lower separator", (void *)n, i);
        if (has_hi && key_compare(key, len, hi, hi_len) >= 0)
            CHECK_FAIL("page %p slot %zu: key not below the upper separator", (void *)n, i);
        prev = key;
        prev_len = len;
    }
    if (live != n->live_bytes)
        CHECK_FAIL("page %p: live_bytes %u, entries sum to %zu", (void *)n, n->live_bytes, live);
    return 0;
}

static int check_node(const struct kd_node *n, int depth, bool is_root, const unsigned char *lo,
                      size_t lo_len, bool has_lo, const unsigned char *hi, size_t hi_len,
                      bool has_hi, struct check_state *st)
{
    if (depth >= KD_MAX_HEIGHT)
        CHECK_FAIL("tree deeper than %d", KD_MAX_HEIGHT);
    if (atomic_load(&n->refs) < 1)
        CHECK_FAIL("node %p: refs %u", (void *)n, atomic_load(&n->refs));
    int rc = check_page(n, lo, lo_len, hi, hi_len, has_lo, has_hi);
    if (rc)
        return rc;
    if (n->is_leaf) {
        if (n->count == 0)
            CHECK_FAIL("leaf %p is empty", (void *)n);
        if (st->leaf_depth < 0)
            st->leaf_depth = depth;
        else if (st->leaf_depth != depth)
            CHECK_FAIL("leaf %p at depth %d, others at %d", (void *)n, depth, st->leaf_depth);
        st->keys += n->count;
        return 0;
    }
    if (!n->first_child)
        CHECK_FAIL("internal node %p has no child", (void *)n);
    if (is_root && n->count == 0)
        CHECK_FAIL("internal root %p has a single child", (void *)n);
    for (size_t c = 0; c <= n->count; c++) {
        const unsigned char *clo = lo, *chi = hi;
        size_t clo_len = lo_len, chi_len = hi_len;
        bool c_has_lo = has_lo, c_has_hi = has_hi;
        if (c > 0) {
            clo = entry_key(node_entry(n, c - 1), KD_INNER_PAYLOAD, &clo_len);
            c_has_lo = true;
        }
        if (c < n->count) {
            chi = entry_key(node_entry(n, c), KD_INNER_PAYLOAD, &chi_len);
            c_has_hi = true;
        }
        const struct kd_node *child = node_child(n, c);
        if (!child)
            CHECK_FAIL("internal node %p: child %zu is NULL", (void *)n, c);
        if (child->is_leaf != node_child(n, 0)->is_leaf)
            CHECK_FAIL("internal node %p: children of mixed kinds", (void *)n);
        rc =
            check_node(child, depth + 1, false, clo, clo_len, c_has_lo, chi, chi_len, c_has_hi, st);
        if (rc)
            return rc;
    }
    return 0;
}

int keydir_check(const struct keydir *kd)
{
    struct check_state st = {-1, 0};
    if (kd->root) {
        if (kd->root->is_leaf && kd->root->count == 0)
            CHECK_FAIL("empty root leaf (an empty map has no root)");
        int rc = check_node(kd->root, 0, true, NULL, 0, false, NULL, 0, false, &st);
        if (rc)
            return rc;
    }
    if (st.keys != kd->count)
        CHECK_FAIL("count %zu, leaves hold %zu keys", kd->count, st.keys);
    return 0;
}
