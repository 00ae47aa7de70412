/*
 * fuzz_record.c — libFuzzer target for the data-file record decoder (src/store/record.c).
 * Decodes at every offset of the input and checks what a caller relies on: a valid record
 * lies wholly inside the input, its parts add up, and re-encoding it gives the same bytes.
 */
#include "store/record.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t off = 0; off < size; off++) {
        struct record r;
        if (record_decode(data + off, size - off, &r) != RECORD_OK)
            continue;
        if (r.total_len > size - off || r.total_len != record_size(r.key_len, r.value_len))
            abort();
        if (r.key != data + off + RECORD_HEADER_SIZE || r.value != r.key + r.key_len)
            abort();
        if (r.kind == RECORD_PAD)
            continue; /* pads are written by repair, not by record_encode */
        uint8_t *again = malloc(r.total_len);
        record_encode(again, r.kind, r.revision, r.expiry_ms, r.key, r.key_len, r.value,
                      r.value_len);
        if (memcmp(again, data + off, r.total_len) != 0)
            abort();
        free(again);
    }
    size_t next = record_find_next_valid(data, size, 0);
    if (next > size)
        abort();
    return 0;
}
