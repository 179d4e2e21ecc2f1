// tensorinspect.c — see tensorinspect.h.
#include "trainer/tensorinspect.h"

#include <jansson.h>
#include <string.h>

#include "trainer/checkpoint.h"

static void print_metadata(const char* text, FILE* out) {
    json_t* meta = json_loads(text, 0, NULL);
    if (!json_is_object(meta)) {
        fprintf(out, "metadata: %s\n", text);
        json_decref(meta);
        return;
    }
    const char* key;
    json_t* v;
    fprintf(out, "metadata:\n");
    json_object_foreach(meta, key, v) {
        const char* s = json_is_string(v) ? json_string_value(v) : "(not a string)";
        if (strchr(s, '\n')) fprintf(out, "  %s: |\n    %.*s...\n", key, (int)(strchr(s, '\n') - s), s);
        else fprintf(out, "  %s: %s\n", key, s);
    }
    json_decref(meta);
}

int tensor_file_inspect(const char* path, FILE* out, Error* e) {
    TensorSet ts;
    if (tensor_file_read(path, &ts, e) != 0) {
        tensorset_free(&ts);
        return -1;
    }
    int64_t total = 0;
    size_t bytes = 0;
    for (int i = 0; i < ts.n; i++) {
        const NamedTensor* t = &ts.t[i];
        char shape[128];
        size_t o = (size_t)snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->ndim && o < sizeof shape; d++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, d ? ", %lld" : "%lld", (long long)t->shape[d]);
        if (o < sizeof shape) snprintf(shape + o, sizeof shape - o, "]");
        fprintf(out, "%-48s %-5s %s\n", t->name, dtype_name(t->dtype), shape);
        total += tensor_numel(t);
        bytes += tensor_nbytes(t);
    }
    fprintf(out, "%d tensors, %lld values, %.2f MB\n", ts.n, (long long)total, bytes / 1e6);
    if (ts.metadata) print_metadata(ts.metadata, out);
    tensorset_free(&ts);
    return 0;
}
