// pickle.c — reads and writes the torch state_dict subset of Python's pickle (see pickle.h).
//
// Contract: the reader is a small stack machine over typed values; it resolves globals by name against
// a fixed allow-list and never calls anything. Every read is bounds-checked, memo indices are bounded
// by the input length, and every value lives in one arena freed at the end, so malformed or hostile
// input ends in -1 with a message, never a crash or a leak.
#include "trainer/pickle.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ------------------------------------------------------------------------------------------ opcodes
enum {
    OP_MARK = '(', OP_STOP = '.', OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M', OP_NONE = 'N',
    OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U',
    OP_BINUNICODE = 'X', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_BINGET = 'h', OP_LONG_BINGET = 'j',
    OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_SETITEM = 's', OP_TUPLE = 't', OP_SETITEMS = 'u',
    OP_EMPTY_DICT = '}', OP_EMPTY_TUPLE = ')', OP_PROTO = 0x80, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a,
    OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
};

// ------------------------------------------------------------------------------------------ values
typedef enum { V_NONE, V_BOOL, V_INT, V_STR, V_TUPLE, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR } VKind;
typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_STORAGE } GlobalKind;

typedef struct Value Value;
struct Value {
    VKind kind;
    Value* arena_next;
    int64_t i;       // V_BOOL/V_INT: the value; V_STORAGE: numel; V_GLOBAL: GlobalKind
    DType dtype;     // V_GLOBAL of a storage class, V_STORAGE
    char* s;         // V_STR: text (NUL-terminated, slen bytes); V_STORAGE: key
    size_t slen;
    Value** items;   // V_TUPLE: elements; V_DICT: keys and values interleaved
    size_t n, cap;
    Value* storage;  // V_TENSOR: its V_STORAGE, storage offset, shape and strides (elements)
    int64_t offset;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
};

typedef struct Parser {
    const uint8_t* p;
    size_t len, pos;
    size_t op_pos;  // byte offset of the opcode being executed (for messages)
    const char* name;
    Error* e;
    Value* arena;
    Value** stack;
    size_t sn, scap;
    size_t* marks;  // stack heights at each MARK
    size_t mn, mcap;
    Value** memo;
    size_t memo_cap, memo_count;
} Parser;

static const struct { const char* cls; DType dt; } kStorageClasses[] = {
    {"FloatStorage", DT_F32}, {"BFloat16Storage", DT_BF16}, {"HalfStorage", DT_F16},
    {"DoubleStorage", DT_F64}, {"LongStorage", DT_I64},     {"IntStorage", DT_I32},
    {"ShortStorage", DT_I16}, {"CharStorage", DT_I8},        {"ByteStorage", DT_U8},
    {"BoolStorage", DT_BOOL},
};

const char* pickle_storage_class(DType dt) {
    for (size_t i = 0; i < sizeof kStorageClasses / sizeof kStorageClasses[0]; i++)
        if (kStorageClasses[i].dt == dt) return kStorageClasses[i].cls;
    return NULL;
}

// Formats "<name>: malformed pickle at byte N: <what> (...)" and returns -1.
static int fail(Parser* P, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Parser* P, const char* fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return errorf(P->e, "%s: malformed pickle at byte %zu: %s (the file is truncated or corrupt, or not a torch state_dict)",
                  P->name, P->op_pos, what);
}

// Copies up to 60 bytes of s into out with non-printable bytes shown as '?', for messages.
static const char* printable(const char* s, size_t n, char out[64]) {
    size_t k = n < 60 ? n : 60;
    for (size_t i = 0; i < k; i++) out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    out[k] = 0;
    if (n > k) strcpy(out + k, "...");
    return out;
}

static Value* new_value(Parser* P, VKind kind) {
    Value* v = xcalloc(1, sizeof *v);
    v->kind = kind;
    v->arena_next = P->arena;
    P->arena = v;
    return v;
}

static void free_arena(Value* v) {
    while (v) {
        Value* next = v->arena_next;
        free(v->s);
        free(v->items);
        free(v);
        v = next;
    }
}

static void append_item(Value* c, Value* item) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4;
        c->items = xrealloc(c->items, c->cap * sizeof *c->items);
    }
    c->items[c->n++] = item;
}

// ------------------------------------------------------------------------------------------ stack
static void push(Parser* P, Value* v) {
    if (P->sn == P->scap) {
        P->scap = P->scap ? 2 * P->scap : 64;
        P->stack = xrealloc(P->stack, P->scap * sizeof *P->stack);
    }
    P->stack[P->sn++] = v;
}

static size_t fence(const Parser* P) { return P->mn ? P->marks[P->mn - 1] : 0; }

// Pops the top value (never below the innermost MARK); NULL with an error on underflow.
static Value* pop(Parser* P) {
    if (P->sn <= fence(P)) {
        fail(P, "stack underflow");
        return NULL;
    }
    return P->stack[--P->sn];
}

static Value* top(Parser* P) {
    if (P->sn <= fence(P)) {
        fail(P, "stack underflow");
        return NULL;
    }
    return P->stack[P->sn - 1];
}

static int push_mark(Parser* P) {
    if (P->mn == P->mcap) {
        P->mcap = P->mcap ? 2 * P->mcap : 16;
        P->marks = xrealloc(P->marks, P->mcap * sizeof *P->marks);
    }
    P->marks[P->mn++] = P->sn;
    return 0;
}

// Pops the innermost MARK; *start = index of the first item above it.
static int pop_mark(Parser* P, size_t* start) {
    if (P->mn == 0) return fail(P, "no MARK on the stack");
    *start = P->marks[--P->mn];
    return 0;
}

// ------------------------------------------------------------------------------------------ input
static int take(Parser* P, size_t n, const uint8_t** out) {
    if (n > P->len - P->pos) return fail(P, "needs %zu more bytes but the pickle ends", n);
    *out = P->p + P->pos;
    P->pos += n;
    return 0;
}

static int read_le(Parser* P, int nbytes, uint64_t* out) {
    const uint8_t* b = NULL;
    if (take(P, (size_t)nbytes, &b)) return -1;
    uint64_t v = 0;
    for (int i = nbytes - 1; i >= 0; i--) v = (v << 8) | b[i];
    *out = v;
    return 0;
}

// Reads a '\n'-terminated line (GLOBAL operands).
static int read_line(Parser* P, const char** s, size_t* n) {
    const uint8_t* start = P->p + P->pos;
    const uint8_t* nl = memchr(start, '\n', P->len - P->pos);
    if (!nl) return fail(P, "GLOBAL operand is not terminated by a newline");
    *s = (const char*)start;
    *n = (size_t)(nl - start);
    P->pos += *n + 1;
    return 0;
}

// ------------------------------------------------------------------------------------------ opcodes
static int push_int(Parser* P, int64_t x) {
    Value* v = new_value(P, V_INT);
    v->i = x;
    push(P, v);
    return 0;
}

static int op_int(Parser* P, int op) {
    uint64_t u = 0;
    if (op == OP_BININT1) return read_le(P, 1, &u) ? -1 : push_int(P, (int64_t)u);
    if (op == OP_BININT2) return read_le(P, 2, &u) ? -1 : push_int(P, (int64_t)u);
    if (op == OP_BININT) return read_le(P, 4, &u) ? -1 : push_int(P, (int64_t)(int32_t)(uint32_t)u);
    // LONG1: n-byte two's complement little-endian; torch uses it for counts >= 2^31.
    if (read_le(P, 1, &u)) return -1;
    int n = (int)u;
    if (n > 8) return fail(P, "LONG1 integer of %d bytes is too large", n);
    if (n == 0) return push_int(P, 0);
    if (read_le(P, n, &u)) return -1;
    if (n < 8 && (u >> (8 * n - 1)) & 1u) u |= ~(uint64_t)0 << (8 * n);  // sign-extend
    return push_int(P, (int64_t)u);
}

static int op_string(Parser* P, int op) {
    uint64_t n = 0;
    int width = (op == OP_SHORT_BINUNICODE || op == OP_SHORT_BINSTRING) ? 1 : op == OP_BINUNICODE8 ? 8 : 4;
    if (read_le(P, width, &n)) return -1;
    if (op == OP_BINSTRING && (int32_t)(uint32_t)n < 0) return fail(P, "negative string length");
    const uint8_t* b = NULL;
    if (take(P, (size_t)n, &b)) return -1;
    Value* v = new_value(P, V_STR);
    v->s = xmalloc((size_t)n + 1);
    memcpy(v->s, b, (size_t)n);
    v->s[n] = 0;
    v->slen = (size_t)n;
    push(P, v);
    return 0;
}

static int resolve_global(Parser* P, const char* mod, size_t ml, const char* nm, size_t nl) {
    Value* g = new_value(P, V_GLOBAL);
    if (ml == 11 && !memcmp(mod, "collections", 11) && nl == 11 && !memcmp(nm, "OrderedDict", 11)) {
        g->i = G_ORDERED_DICT;
    } else if (ml == 12 && !memcmp(mod, "torch._utils", 12) && nl == 18 && !memcmp(nm, "_rebuild_tensor_v2", 18)) {
        g->i = G_REBUILD_TENSOR_V2;
    } else {
        int found = 0;
        for (size_t i = 0; ml == 5 && !memcmp(mod, "torch", 5) && i < sizeof kStorageClasses / sizeof kStorageClasses[0]; i++) {
            if (strlen(kStorageClasses[i].cls) == nl && !memcmp(nm, kStorageClasses[i].cls, nl)) {
                g->i = G_STORAGE;
                g->dtype = kStorageClasses[i].dt;
                found = 1;
            }
        }
        if (!found) {
            char a[64], b[64];
            return errorf(P->e, "%s: pickle uses unsupported global '%s.%s' at byte %zu; only torch state_dict pickles are accepted",
                          P->name, printable(mod, ml, a), printable(nm, nl, b), P->op_pos);
        }
    }
    push(P, g);
    return 0;
}

static int op_global(Parser* P, int op) {
    if (op == OP_GLOBAL) {
        const char *mod = NULL, *nm = NULL;
        size_t ml = 0, nl = 0;
        if (read_line(P, &mod, &ml) || read_line(P, &nm, &nl)) return -1;
        return resolve_global(P, mod, ml, nm, nl);
    }
    Value* nm = pop(P);  // STACK_GLOBAL: module and name strings on the stack
    Value* mod = nm ? pop(P) : NULL;
    if (!mod) return -1;
    if (mod->kind != V_STR || nm->kind != V_STR) return fail(P, "STACK_GLOBAL operands are not strings");
    return resolve_global(P, mod->s, mod->slen, nm->s, nm->slen);
}

static int op_tuple(Parser* P, int op) {
    size_t start = 0;
    if (op == OP_TUPLE) {
        if (pop_mark(P, &start)) return -1;
    } else {
        size_t k = op == OP_EMPTY_TUPLE ? 0 : (size_t)(op - OP_TUPLE1 + 1);
        if (P->sn < fence(P) + k) return fail(P, "stack underflow");
        start = P->sn - k;
    }
    Value* t = new_value(P, V_TUPLE);
    for (size_t i = start; i < P->sn; i++) append_item(t, P->stack[i]);
    P->sn = start;
    push(P, t);
    return 0;
}

static int dict_set(Parser* P, Value* d, Value* k, Value* v) {
    if (d->kind != V_DICT) return fail(P, "SETITEM on something that is not a dict");
    for (size_t i = 0; k->kind == V_STR && i < d->n; i += 2) {
        Value* old = d->items[i];
        if (old->kind == V_STR && old->slen == k->slen && !memcmp(old->s, k->s, k->slen)) {
            d->items[i + 1] = v;  // a repeated key replaces the value, as in Python
            return 0;
        }
    }
    append_item(d, k);
    append_item(d, v);
    return 0;
}

static int op_setitems(Parser* P, int op) {
    if (op == OP_SETITEM) {
        Value* v = pop(P);
        Value* k = v ? pop(P) : NULL;
        Value* d = k ? top(P) : NULL;
        return d ? dict_set(P, d, k, v) : -1;
    }
    size_t start = 0;
    if (pop_mark(P, &start)) return -1;
    if ((P->sn - start) % 2) return fail(P, "SETITEMS with an odd number of items");
    if (start <= fence(P)) return fail(P, "stack underflow");
    Value* d = P->stack[start - 1];  // the dict sits just below the MARK
    for (size_t i = start; i < P->sn; i += 2)
        if (dict_set(P, d, P->stack[i], P->stack[i + 1])) return -1;
    P->sn = start;
    return 0;
}

static int op_memo(Parser* P, int op) {
    uint64_t idx = 0;
    if (op == OP_MEMOIZE) idx = P->memo_count;
    else if (read_le(P, (op == OP_BINPUT || op == OP_BINGET) ? 1 : 4, &idx)) return -1;
    if (op == OP_BINGET || op == OP_LONG_BINGET) {
        if (idx >= P->memo_cap || !P->memo[idx]) return fail(P, "memo key %llu was never stored", (unsigned long long)idx);
        push(P, P->memo[idx]);
        return 0;
    }
    // Each memo store costs at least one byte of input, so a valid index is below the input length.
    if (idx >= P->len) return fail(P, "memo index %llu is out of range", (unsigned long long)idx);
    Value* v = top(P);
    if (!v) return -1;
    if (idx >= P->memo_cap) {
        size_t cap = P->memo_cap ? P->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        P->memo = xrealloc(P->memo, cap * sizeof *P->memo);
        memset(P->memo + P->memo_cap, 0, (cap - P->memo_cap) * sizeof *P->memo);
        P->memo_cap = cap;
    }
    if (!P->memo[idx]) P->memo_count++;
    P->memo[idx] = v;
    return 0;
}

// BINPERSID: ('storage', torch.<Type>Storage, key, location, numel) -> a storage reference.
static int op_persid(Parser* P) {
    Value* pid = pop(P);
    if (!pid) return -1;
    if (pid->kind != V_TUPLE || pid->n != 5) return fail(P, "persistent id is not a 5-tuple ('storage', type, key, location, numel)");
    Value** it = pid->items;
    if (it[0]->kind != V_STR || strcmp(it[0]->s, "storage") != 0) return fail(P, "persistent id does not start with 'storage'");
    if (it[1]->kind != V_GLOBAL || it[1]->i != G_STORAGE) return fail(P, "persistent id type is not a torch storage class");
    if (it[2]->kind != V_STR || it[2]->slen == 0 || it[2]->slen > 64 || strlen(it[2]->s) != it[2]->slen || strchr(it[2]->s, '/'))
        return fail(P, "storage key is not a short string without '/'");
    if (it[3]->kind != V_STR) return fail(P, "storage location is not a string");
    if (it[4]->kind != V_INT || it[4]->i < 0) return fail(P, "storage size is not a non-negative integer");
    if (it[4]->i > INT64_MAX / 8) return fail(P, "storage size %lld is too large", (long long)it[4]->i);
    Value* s = new_value(P, V_STORAGE);
    s->dtype = it[1]->dtype;
    s->i = it[4]->i;
    s->s = xstrdup(it[2]->s);
    s->slen = it[2]->slen;
    push(P, s);
    return 0;
}

static int int_tuple(Parser* P, const Value* t, const char* what, int64_t out[TENSOR_MAX_DIMS]) {
    if (t->kind != V_TUPLE) return fail(P, "tensor %s is not a tuple", what);
    if (t->n > TENSOR_MAX_DIMS) return fail(P, "tensor has %zu dimensions (at most %d are supported)", t->n, TENSOR_MAX_DIMS);
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->kind != V_INT || t->items[i]->i < 0) return fail(P, "tensor %s[%zu] is not a non-negative integer", what, i);
        out[i] = t->items[i]->i;
    }
    return 0;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
static int rebuild_tensor(Parser* P, const Value* args) {
    if (args->n != 6 && args->n != 7) return fail(P, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", args->n);
    Value** a = args->items;
    if (a[0]->kind != V_STORAGE) return fail(P, "_rebuild_tensor_v2 argument 1 is not a storage");
    if (a[1]->kind != V_INT || a[1]->i < 0) return fail(P, "storage offset is not a non-negative integer");
    if (a[4]->kind != V_BOOL && a[4]->kind != V_INT) return fail(P, "requires_grad is not a bool");
    if (a[5]->kind != V_DICT) return fail(P, "backward hooks are not an OrderedDict");
    Value* t = new_value(P, V_TENSOR);
    if (int_tuple(P, a[2], "size", t->shape) || int_tuple(P, a[3], "stride", t->stride)) return -1;
    if (a[2]->n != a[3]->n) return fail(P, "tensor size has %zu dimensions but stride has %zu", a[2]->n, a[3]->n);
    t->storage = a[0];
    t->offset = a[1]->i;
    t->ndim = (int)a[2]->n;
    push(P, t);
    return 0;
}

static int op_reduce(Parser* P) {
    Value* args = pop(P);
    Value* fn = args ? pop(P) : NULL;
    if (!fn) return -1;
    if (args->kind != V_TUPLE) return fail(P, "REDUCE arguments are not a tuple");
    if (fn->kind != V_GLOBAL || fn->i == G_STORAGE) return fail(P, "REDUCE calls something other than OrderedDict or _rebuild_tensor_v2");
    if (fn->i == G_REBUILD_TENSOR_V2) return rebuild_tensor(P, args);
    if (args->n != 0) return fail(P, "OrderedDict is constructed with arguments");
    push(P, new_value(P, V_DICT));
    return 0;
}

// BUILD on a dict sets instance attributes (OrderedDict._metadata of nn.Module.state_dict): ignored.
static int op_build(Parser* P) {
    Value* state = pop(P);
    Value* obj = state ? top(P) : NULL;
    if (!obj) return -1;
    if (obj->kind != V_DICT) return fail(P, "BUILD on something that is not a dict");
    return 0;
}

static int push_const(Parser* P, VKind kind, int64_t i) {
    Value* v = new_value(P, kind);
    v->i = i;
    push(P, v);
    return 0;
}

static int unsupported_opcode(Parser* P, int op) {
    return errorf(P->e, "%s: pickle uses unsupported opcode 0x%02x ('%c') at byte %zu; only torch state_dict pickles are accepted",
                  P->name, op, (op >= 0x20 && op < 0x7f) ? op : '?', P->op_pos);
}

// Executes one opcode. Returns 0 to continue, 1 at STOP, -1 on error.
static int step(Parser* P, int op) {
    uint64_t skip = 0;
    switch (op) {
    case OP_PROTO:
        if (read_le(P, 1, &skip)) return -1;
        return skip <= 5 ? 0 : fail(P, "pickle protocol %d is not supported", (int)skip);
    case OP_FRAME: return read_le(P, 8, &skip);
    case OP_STOP: return 1;
    case OP_MARK: return push_mark(P);
    case OP_NONE: return push_const(P, V_NONE, 0);
    case OP_NEWTRUE: return push_const(P, V_BOOL, 1);
    case OP_NEWFALSE: return push_const(P, V_BOOL, 0);
    case OP_EMPTY_DICT: return push_const(P, V_DICT, 0);
    case OP_BININT: case OP_BININT1: case OP_BININT2: case OP_LONG1: return op_int(P, op);
    case OP_BINUNICODE: case OP_SHORT_BINUNICODE: case OP_BINUNICODE8: case OP_BINSTRING:
    case OP_SHORT_BINSTRING: return op_string(P, op);
    case OP_GLOBAL: case OP_STACK_GLOBAL: return op_global(P, op);
    case OP_EMPTY_TUPLE: case OP_TUPLE: case OP_TUPLE1: case OP_TUPLE2: case OP_TUPLE3: return op_tuple(P, op);
    case OP_SETITEM: case OP_SETITEMS: return op_setitems(P, op);
    case OP_BINPUT: case OP_LONG_BINPUT: case OP_MEMOIZE: case OP_BINGET: case OP_LONG_BINGET: return op_memo(P, op);
    case OP_BINPERSID: return op_persid(P);
    case OP_REDUCE: return op_reduce(P);
    case OP_BUILD: return op_build(P);
    default: return unsupported_opcode(P, op);
    }
}

// ------------------------------------------------------------------------------------------ result
static int mul_ok(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }
static int add_ok(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

// Checks that every element the tensor addresses lies inside its storage (overflow-safe).
static int check_extent(const PickleTensor* t, const char* name, Error* e) {
    int64_t numel = 1, last = t->offset;
    for (int i = 0; i < t->ndim; i++)
        if (!mul_ok(numel, t->shape[i], &numel)) return errorf(e, "%s: tensor '%s' has too many elements", name, t->name);
    int64_t bytes;
    if (!mul_ok(numel, (int64_t)dtype_size(t->dtype), &bytes)) return errorf(e, "%s: tensor '%s' is too large", name, t->name);
    for (int i = 0; numel > 0 && i < t->ndim; i++) {
        int64_t span;
        if (!mul_ok(t->shape[i] - 1, t->stride[i], &span) || !add_ok(last, span, &last))
            return errorf(e, "%s: tensor '%s' has strides that overflow", name, t->name);
    }
    int64_t limit = numel > 0 ? last + 1 : t->offset;
    if (limit > t->storage_numel)
        return errorf(e, "%s: tensor '%s' reaches element %lld of storage '%s', which has only %lld elements; the file is corrupt",
                      name, t->name, (long long)limit, t->storage_key, (long long)t->storage_numel);
    return 0;
}

// Storages referenced by several tensors must agree on type and size.
static int check_shared_storages(const PickleStateDict* d, const char* name, Error* e) {
    for (int i = 0; i < d->n; i++)
        for (int j = 0; j < i; j++) {
            const PickleTensor *a = &d->t[i], *b = &d->t[j];
            if (strcmp(a->storage_key, b->storage_key) == 0 && (a->dtype != b->dtype || a->storage_numel != b->storage_numel))
                return errorf(e, "%s: storage '%s' is declared with different types or sizes by '%s' and '%s'; the file is corrupt",
                              name, a->storage_key, b->name, a->name);
        }
    return 0;
}

static int collect(Parser* P, const Value* dict, PickleStateDict* out) {
    if (dict->kind != V_DICT) return fail(P, "the pickled object is not a dict (only state_dicts of tensors are accepted)");
    out->n = 0;
    out->t = xcalloc(dict->n / 2 + 1, sizeof *out->t);
    for (size_t i = 0; i < dict->n; i += 2) {
        const Value *k = dict->items[i], *v = dict->items[i + 1];
        if (k->kind != V_STR || strlen(k->s) != k->slen) return fail(P, "a state_dict key is not a string");
        if (v->kind != V_TENSOR)
            return errorf(P->e, "%s: state_dict entry '%s' is not a tensor; only state_dicts of tensors are accepted", P->name, k->s);
        PickleTensor* t = &out->t[out->n++];
        t->name = xstrdup(k->s);
        t->dtype = v->storage->dtype;
        t->storage_key = xstrdup(v->storage->s);
        t->storage_numel = v->storage->i;
        t->offset = v->offset;
        t->ndim = v->ndim;
        memcpy(t->shape, v->shape, sizeof t->shape);
        memcpy(t->stride, v->stride, sizeof t->stride);
        if (check_extent(t, P->name, P->e)) return -1;
    }
    return check_shared_storages(out, P->name, P->e);
}

static int run(Parser* P, PickleStateDict* out) {
    for (;;) {
        P->op_pos = P->pos;
        if (P->pos >= P->len) return fail(P, "the pickle ends without STOP");
        int op = P->p[P->pos++];
        int r = step(P, op);
        if (r < 0) return -1;
        if (r == 1) break;
    }
    Value* result = pop(P);
    return result ? collect(P, result, out) : -1;
}

int pickle_read_state_dict(const void* buf, size_t len, const char* name, PickleStateDict* out, Error* e) {
    Parser P = {.p = buf, .len = len, .name = name, .e = e};
    memset(out, 0, sizeof *out);
    int rc = run(&P, out);
    free_arena(P.arena);
    free(P.stack);
    free(P.marks);
    free(P.memo);
    if (rc) pickle_state_dict_free(out);
    return rc;
}

void pickle_state_dict_free(PickleStateDict* d) {
    for (int i = 0; i < d->n; i++) {
        free(d->t[i].name);
        free(d->t[i].storage_key);
    }
    free(d->t);
    memset(d, 0, sizeof *d);
}

// ------------------------------------------------------------------------------------------ writer
typedef struct Out {
    uint8_t* p;
    size_t n, cap;
    int memo_next;
} Out;

static void put(Out* o, const void* b, size_t n) {
    if (o->n + n > o->cap) {
        while (o->n + n > o->cap) o->cap = o->cap ? 2 * o->cap : 4096;
        o->p = xrealloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, b, n);
    o->n += n;
}

static void put_op(Out* o, int op) {
    uint8_t b = (uint8_t)op;
    put(o, &b, 1);
}

static void put_le(Out* o, uint64_t v, int nbytes) {
    uint8_t b[8];
    for (int i = 0; i < nbytes; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(o, b, (size_t)nbytes);
}

static void put_int(Out* o, int64_t v) {
    if (v >= 0 && v < 256) { put_op(o, OP_BININT1); put_le(o, (uint64_t)v, 1); }
    else if (v >= 0 && v < 65536) { put_op(o, OP_BININT2); put_le(o, (uint64_t)v, 2); }
    else if (v >= INT32_MIN && v <= INT32_MAX) { put_op(o, OP_BININT); put_le(o, (uint64_t)v, 4); }
    else { put_op(o, OP_LONG1); put_op(o, 8); put_le(o, (uint64_t)v, 8); }
}

static void put_str(Out* o, const char* s) {
    size_t n = strlen(s);
    put_op(o, OP_BINUNICODE);
    put_le(o, n, 4);
    put(o, s, n);
}

// Emits a GLOBAL the first time (memoized in *slot) and a BINGET afterwards, as pickle does.
static void put_global(Out* o, const char* module, const char* name, int* slot) {
    if (*slot >= 0) {
        put_op(o, OP_LONG_BINGET);
        put_le(o, (uint64_t)*slot, 4);
        return;
    }
    put_op(o, OP_GLOBAL);
    put(o, module, strlen(module));
    put_op(o, '\n');
    put(o, name, strlen(name));
    put_op(o, '\n');
    *slot = o->memo_next++;
    put_op(o, OP_LONG_BINPUT);
    put_le(o, (uint64_t)*slot, 4);
}

static void put_int_tuple(Out* o, const int64_t* v, int n) {
    if (n > 3) put_op(o, OP_MARK);
    for (int i = 0; i < n; i++) put_int(o, v[i]);
    if (n == 0) put_op(o, OP_EMPTY_TUPLE);
    else if (n <= 3) put_op(o, OP_TUPLE1 + n - 1);
    else put_op(o, OP_TUPLE);
}

// name: _rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict())
static void put_tensor(Out* o, const PickleTensor* t, int* od_slot, int* rebuild_slot, int storage_slots[]) {
    put_str(o, t->name);
    put_global(o, "torch._utils", "_rebuild_tensor_v2", rebuild_slot);
    put_op(o, OP_MARK);
    put_op(o, OP_MARK);
    put_str(o, "storage");
    put_global(o, "torch", pickle_storage_class(t->dtype), &storage_slots[t->dtype]);
    put_str(o, t->storage_key);
    put_str(o, "cpu");
    put_int(o, t->storage_numel);
    put_op(o, OP_TUPLE);
    put_op(o, OP_BINPERSID);
    put_int(o, t->offset);
    put_int_tuple(o, t->shape, t->ndim);
    put_int_tuple(o, t->stride, t->ndim);
    put_op(o, OP_NEWFALSE);
    put_global(o, "collections", "OrderedDict", od_slot);
    put_op(o, OP_EMPTY_TUPLE);
    put_op(o, OP_REDUCE);
    put_op(o, OP_TUPLE);
    put_op(o, OP_REDUCE);
}

uint8_t* pickle_write_state_dict(const PickleTensor* t, int n, size_t* len) {
    Out o = {0};
    int od_slot = -1, rebuild_slot = -1, storage_slots[DT_BOOL + 1];
    for (int i = 0; i <= DT_BOOL; i++) storage_slots[i] = -1;
    put_op(&o, OP_PROTO);
    put_op(&o, 2);
    put_global(&o, "collections", "OrderedDict", &od_slot);
    put_op(&o, OP_EMPTY_TUPLE);
    put_op(&o, OP_REDUCE);
    put_op(&o, OP_MARK);
    for (int i = 0; i < n; i++) put_tensor(&o, &t[i], &od_slot, &rebuild_slot, storage_slots);
    put_op(&o, OP_SETITEMS);
    put_op(&o, OP_STOP);
    *len = o.n;
    return o.p;
}
