/* Compiled inner loops of the entity and fact builders (optional; pure-Python twins in
 * kbioxlm/speedups.py produce the same bytes and are used when this module is absent).
 *
 * Why hand-written C: with a large KB a match comes every few characters, and after the
 * automaton walk (daachorse, compiled) the build's time is per-entity bookkeeping: mapping
 * match offsets back from the word-marked text and writing one JSON span object per entity.
 * No library writes KBioXLM records, and in Python each entity costs a few hundred ns of object
 * traffic even through map/join; here it is a few integer writes into one buffer.
 *
 * Entity formats are the builders' per-key strings '{"start":%d,"end":%d' + rest, where rest is
 * the rest of the JSON object with any literal '%' doubled (it is also a Python %-format).
 *
 * Uses GCC/Clang builtins (unsigned __int128, __builtin_prefetch); with another compiler the
 * optional build fails and the pure-Python twins run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char FMT_HEAD[] = "{\"start\":%d,\"end\":%d";
#define FMT_HEAD_LEN ((Py_ssize_t)(sizeof(FMT_HEAD) - 1))

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = PyMem_Realloc(b->data, (size_t)cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

#define PUT(b, lit) buf_put((b), (lit), (Py_ssize_t)sizeof(lit) - 1)

static int buf_int(Buf *b, Py_ssize_t v) {
    char tmp[24];
    int n = 0;
    int neg = v < 0;
    size_t u = neg ? (size_t)0 - (size_t)v : (size_t)v;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg) tmp[sizeof(tmp) - 1 - n++] = '-';
    return buf_put(b, tmp + sizeof(tmp) - n, n);
}

/* '{"start":<s>,"end":<e>' + rest of fmt with '%%' -> '%'. */
static int buf_entity(Buf *b, PyObject *fmt, Py_ssize_t s, Py_ssize_t e) {
    Py_ssize_t n;
    const char *f;
    if (!PyUnicode_Check(fmt)) {
        PyErr_SetString(PyExc_TypeError, "entity format must be a str");
        return -1;
    }
    f = PyUnicode_AsUTF8AndSize(fmt, &n);
    if (!f) return -1;
    if (n < FMT_HEAD_LEN || memcmp(f, FMT_HEAD, (size_t)FMT_HEAD_LEN) != 0) {
        PyErr_Format(PyExc_ValueError, "entity format does not start with %s: %R", FMT_HEAD, fmt);
        return -1;
    }
    if (PUT(b, "{\"start\":") || buf_int(b, s) || PUT(b, ",\"end\":") || buf_int(b, e)) return -1;
    f += FMT_HEAD_LEN;
    n -= FMT_HEAD_LEN;
    if (buf_reserve(b, n)) return -1;
    const char *pct = memchr(f, '%', (size_t)n);
    if (!pct) {
        memcpy(b->data + b->len, f, (size_t)n);
        b->len += n;
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        b->data[b->len++] = f[i];
        if (f[i] == '%' && i + 1 < n && f[i + 1] == '%') i++;
    }
    return 0;
}

static int span_offsets(PyObject *spans, Py_ssize_t i, Py_ssize_t *s, Py_ssize_t *e) {
    PyObject *sp = PyList_GET_ITEM(spans, i);
    if (!PyTuple_Check(sp) || PyTuple_GET_SIZE(sp) < 2) {
        PyErr_Format(PyExc_TypeError, "span %zd is not a (start, end, ...) tuple", i);
        return -1;
    }
    *s = PyLong_AsSsize_t(PyTuple_GET_ITEM(sp, 0));
    if (*s == -1 && PyErr_Occurred()) return -1;
    *e = PyLong_AsSsize_t(PyTuple_GET_ITEM(sp, 1));
    if (*e == -1 && PyErr_Occurred()) return -1;
    return 0;
}

static PyObject *info_item(PyObject *infos, Py_ssize_t i, Py_ssize_t k) {
    PyObject *info = PyList_GET_ITEM(infos, i);
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) <= k) {
        PyErr_Format(PyExc_TypeError, "entity info %zd is not a tuple of more than %zd items", i, k);
        return NULL;
    }
    return PyTuple_GET_ITEM(info, k);
}

/* ---- switch sampling ------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

PyDoc_STRVAR(sample_indices_doc,
"sample_indices(seed, n, k) -> list\n\n"
"k distinct integers of range(n), sorted, drawn uniformly (Floyd's algorithm; each draw is\n"
"(x * (j + 1)) >> 64 for the next SplitMix64 output x of the 64-bit ``seed``).");

/* Floyd's algorithm: marks k distinct indices of range(n) in taken[n] (zeroed by the caller). */
static void floyd_sample(uint64_t seed, Py_ssize_t n, Py_ssize_t k, unsigned char *taken) {
    uint64_t state = seed;
    for (Py_ssize_t j = n - k; j < n; j++) {
        uint64_t x = splitmix64(&state);
        Py_ssize_t t = (Py_ssize_t)(((unsigned __int128)x * (unsigned __int128)(uint64_t)(j + 1)) >> 64);
        taken[taken[t] ? j : t] = 1;
    }
}

static PyObject *sample_indices(PyObject *self, PyObject *args) {
    unsigned long long seed;
    Py_ssize_t n, k;
    if (!PyArg_ParseTuple(args, "Knn:sample_indices", &seed, &n, &k)) return NULL;
    if (n < 0 || k < 0 || k > n) {
        PyErr_Format(PyExc_ValueError, "cannot draw %zd of %zd", k, n);
        return NULL;
    }
    unsigned char *taken = PyMem_Calloc((size_t)(n ? n : 1), 1);
    if (!taken) return PyErr_NoMemory();
    floyd_sample((uint64_t)seed, n, k, taken);
    PyObject *out = PyList_New(k);
    if (!out) {
        PyMem_Free(taken);
        return NULL;
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n && m < k; i++) {
        if (taken[i]) {
            PyObject *v = PyLong_FromSsize_t(i);
            if (!v) {
                Py_DECREF(out);
                PyMem_Free(taken);
                return NULL;
            }
            PyList_SET_ITEM(out, m++, v);
        }
    }
    PyMem_Free(taken);
    return out;
}

/* '"' + ``s`` as a JSON string + '"' in UTF-8, escaped as json.dumps(ensure_ascii=False) does:
 * '"', '\\' and characters below U+0020 only (\b \f \n \r \t short, others \u00XX). Written
 * here rather than through json's encoder: that builds a second str, which then needs its own
 * UTF-8 copy, for every document. */
static int buf_json_str(Buf *b, PyObject *s) {
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (buf_reserve(b, 2 + 6 * n)) return -1;  /* at most 6 bytes per character (\u00XX) */
    char *o = b->data + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\') {
                *o++ = (char)c;
                continue;
            }
            *o++ = '\\';
            switch (c) {
                case '"': *o++ = '"'; break;
                case '\\': *o++ = '\\'; break;
                case '\b': *o++ = 'b'; break;
                case '\f': *o++ = 'f'; break;
                case '\n': *o++ = 'n'; break;
                case '\r': *o++ = 'r'; break;
                case '\t': *o++ = 't'; break;
                default:
                    *o++ = 'u';
                    *o++ = '0';
                    *o++ = '0';
                    *o++ = hex[c >> 4];
                    *o++ = hex[c & 15];
            }
        } else if (c < 0x800) {
            *o++ = (char)(0xC0 | (c >> 6));
            *o++ = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) {  /* a lone surrogate: let the codec raise its error */
                Py_ssize_t ignored;
                if (!PyUnicode_AsUTF8AndSize(s, &ignored)) return -1;
                PyErr_SetString(PyExc_ValueError, "lone surrogate in text");
                return -1;
            }
            *o++ = (char)(0xE0 | (c >> 12));
            *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *o++ = (char)(0x80 | (c & 0x3F));
        } else {
            *o++ = (char)(0xF0 | (c >> 18));
            *o++ = (char)(0x80 | ((c >> 12) & 0x3F));
            *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *o++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *o++ = '"';
    b->len = o - b->data;
    return 0;
}

/* prefix + ',"text":' + JSON(text) + ',"task":"<task>","entities":[' + ent + ']' [+ ',"relations":[' + rel + ']'] + '}'
 * as a bytes object. */
static PyObject *line_bytes(PyObject *prefix, PyObject *text, const char *task, Buf *ent, Buf *rel) {
    Buf out = {NULL, 0, 0};
    Py_ssize_t np;
    const char *p = PyUnicode_AsUTF8AndSize(prefix, &np);
    if (!p || buf_put(&out, p, np) || PUT(&out, ",\"text\":") || buf_json_str(&out, text) ||
        PUT(&out, ",\"task\":\"") || buf_put(&out, task, (Py_ssize_t)strlen(task)) || PUT(&out, "\",\"entities\":[") ||
        (ent->len && buf_put(&out, ent->data, ent->len)) || PUT(&out, "]") ||
        (rel && (PUT(&out, ",\"relations\":[") || (rel->len && buf_put(&out, rel->data, rel->len)) || PUT(&out, "]"))) ||
        PUT(&out, "}")) {
        PyMem_Free(out.data);
        return NULL;
    }
    PyObject *line = PyBytes_FromStringAndSize(out.data, out.len);
    PyMem_Free(out.data);
    return line;
}

PyDoc_STRVAR(switch_entities_doc,
"switch_entities(text, spans, infos, quota, seed, prefix) -> (line, switches)\n\n"
"spans: list of (start, end, key); infos: list of (target name or None, kept format, switched\n"
"format, ...) per span. min(quota, switchable) of the spans with a target name, drawn as\n"
"sample_indices(seed, switchable, k) picks among them, are replaced by their target name.\n"
"Returns the Entity record as one UTF-8 JSON line (bytes, no newline): ``prefix`` (its\n"
"'{\"id\":..,\"lang\":..' part), the new text, and the JSON objects of all entities with offsets\n"
"in the new text; and the number of switches.");

static PyObject *switch_entities(PyObject *self, PyObject *args) {
    PyObject *text, *spans, *infos, *prefix;
    Py_ssize_t quota;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "UO!O!nKU:switch_entities", &text, &PyList_Type, &spans, &PyList_Type, &infos,
                          &quota, &seed, &prefix))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(spans), nc = 0, m = 0;
    if (PyList_GET_SIZE(infos) != n) {
        PyErr_SetString(PyExc_ValueError, "spans and infos differ in length");
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    PyObject *pieces = NULL, *new_text = NULL, *body = NULL;
    Py_ssize_t *chosen = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    unsigned char *taken = PyMem_Calloc((size_t)(n ? n : 1), 1);
    if (!chosen || !taken) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {  /* the switchable spans */
        PyObject *name = info_item(infos, i, 0);
        if (!name) goto fail;
        if (name != Py_None) {
            if (!PyUnicode_Check(name)) {
                PyErr_Format(PyExc_TypeError, "target name of span %zd is neither a str nor None", i);
                goto fail;
            }
            chosen[m++] = i;
        }
    }
    nc = quota < m ? (quota > 0 ? quota : 0) : m;
    if (nc) {
        floyd_sample((uint64_t)seed, m, nc, taken);
        Py_ssize_t c = 0;
        for (Py_ssize_t j = 0; j < m; j++)
            if (taken[j]) chosen[c++] = chosen[j];  /* c <= j: in place */
    }
    if (nc && !(pieces = PyList_New(0))) goto fail;
    Py_ssize_t shift = 0, pos = 0, ci = 0, next = nc ? chosen[0] : -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s, e;
        PyObject *fmt;
        if (span_offsets(spans, i, &s, &e)) goto fail;
        if (i == next) {
            PyObject *name = PyTuple_GET_ITEM(PyList_GET_ITEM(infos, i), 0);  /* checked above */
            if (s < pos || e < s || e > PyUnicode_GET_LENGTH(text)) {
                PyErr_Format(PyExc_ValueError, "span %zd (%zd, %zd) is out of order or outside the text", i, s, e);
                goto fail;
            }
            PyObject *piece = PyUnicode_Substring(text, pos, s);
            if (!piece || PyList_Append(pieces, piece) || PyList_Append(pieces, name)) {
                Py_XDECREF(piece);
                goto fail;
            }
            Py_DECREF(piece);
            Py_ssize_t ns = s + shift;
            shift += PyUnicode_GET_LENGTH(name) - (e - s);
            s = ns;
            pos = e;
            e += shift;
            if (!(fmt = info_item(infos, i, 2))) goto fail;
            next = ++ci < nc ? chosen[ci] : -1;
        } else {
            s += shift;
            e += shift;
            if (!(fmt = info_item(infos, i, 1))) goto fail;
        }
        if ((i && PUT(&b, ",")) || buf_entity(&b, fmt, s, e)) goto fail;
    }
    if (nc) {
        PyObject *piece = PyUnicode_Substring(text, pos, PyUnicode_GET_LENGTH(text));
        if (!piece || PyList_Append(pieces, piece)) {
            Py_XDECREF(piece);
            goto fail;
        }
        Py_DECREF(piece);
        PyObject *empty = PyUnicode_FromStringAndSize("", 0);
        if (!empty) goto fail;
        new_text = PyUnicode_Join(empty, pieces);
        Py_DECREF(empty);
        if (!new_text) goto fail;
        Py_CLEAR(pieces);
    } else {
        Py_INCREF(text);
        new_text = text;
    }
    PyMem_Free(chosen);
    PyMem_Free(taken);
    chosen = NULL;
    taken = NULL;
    if (!(body = line_bytes(prefix, new_text, "entity", &b, NULL))) goto fail;
    Py_DECREF(new_text);
    PyMem_Free(b.data);
    return Py_BuildValue("(Nn)", body, nc);
fail:
    PyMem_Free(chosen);
    PyMem_Free(taken);
    PyMem_Free(b.data);
    Py_XDECREF(pieces);
    Py_XDECREF(new_text);
    return NULL;
}

PyDoc_STRVAR(unmark_spans_doc,
"unmark_spans(marked, matches, sentinel) -> list\n\n"
"matches: (start, end, key) in ``marked``, in text order and not overlapping; returns them with\n"
"offsets in the text without the sentinel characters (each sentinel is zero-width there).");

static PyObject *unmark_spans(PyObject *self, PyObject *args) {
    PyObject *marked, *matches, *sent;
    if (!PyArg_ParseTuple(args, "UO!U:unmark_spans", &marked, &PyList_Type, &matches, &sent)) return NULL;
    if (PyUnicode_GET_LENGTH(sent) != 1) {
        PyErr_SetString(PyExc_ValueError, "sentinel must be one character");
        return NULL;
    }
    Py_UCS4 sentinel = PyUnicode_READ_CHAR(sent, 0);
    int kind = PyUnicode_KIND(marked);
    const void *data = PyUnicode_DATA(marked);
    Py_ssize_t len = PyUnicode_GET_LENGTH(marked), n = PyList_GET_SIZE(matches);
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    Py_ssize_t p = 0, count = 0;  /* sentinels in marked[:p] */
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s, e;
        if (span_offsets(matches, i, &s, &e)) goto fail;
        if (s < p || e < s || e > len) {
            PyErr_Format(PyExc_ValueError, "match %zd (%zd, %zd) is out of order or outside the text", i, s, e);
            goto fail;
        }
        for (; p < s; p++) count += PyUnicode_READ(kind, data, p) == sentinel;
        Py_ssize_t ns = s - count;
        for (; p < e; p++) count += PyUnicode_READ(kind, data, p) == sentinel;
        PyObject *key = PyTuple_GET_SIZE(PyList_GET_ITEM(matches, i)) > 2 ? PyTuple_GET_ITEM(PyList_GET_ITEM(matches, i), 2)
                                                                          : Py_None;
        PyObject *t = Py_BuildValue("(nnO)", ns, e - count, key);
        if (!t) goto fail;
        PyList_SET_ITEM(out, i, t);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}


/* ---- facts ------------------------------------------------------------------------------ */
PyDoc_STRVAR(fact_heads_doc,
"fact_heads(infos) -> list\n\n"
"Indices of the mentions whose concept may have a tail among the concepts of all mentions:\n"
"infos[i][6] is a bytes object of native int64 hashes, the mention's concept's first, then its\n"
"tails'. A superset of the exact answer (hash collisions only add mentions); [] when none.");

static PyObject *fact_heads(PyObject *self, PyObject *args) {
    PyObject *infos;
    if (!PyArg_ParseTuple(args, "O!:fact_heads", &PyList_Type, &infos)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(infos), size = 16;
    while (size < 2 * n) size *= 2;
    /* Open addressing over the concepts' hashes; a slot holds hash + 1 so that 0 means empty
     * (a concept hashing to -1 would collide with empty: Python never returns -1 as a hash). */
    uint64_t *table = PyMem_Calloc((size_t)size, sizeof(uint64_t));
    PyObject *out = PyList_New(0);
    if (!table || !out) {
        PyMem_Free(table);
        Py_XDECREF(out);
        return table ? NULL : PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sig = info_item(infos, i, 6);
        if (!sig) goto fail;
        if (!PyBytes_Check(sig) || PyBytes_GET_SIZE(sig) < 8 || PyBytes_GET_SIZE(sig) % 8) {
            PyErr_Format(PyExc_TypeError, "signature of mention %zd is not packed int64 hashes", i);
            goto fail;
        }
        uint64_t h;
        memcpy(&h, PyBytes_AS_STRING(sig), 8);
        h += 1;
        size_t slot = (size_t)(h ^ (h >> 29)) & (size_t)(size - 1);
        while (table[slot] && table[slot] != h) slot = (slot + 1) & (size_t)(size - 1);
        table[slot] = h;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sig = PyTuple_GET_ITEM(PyList_GET_ITEM(infos, i), 6);
        const char *p = PyBytes_AS_STRING(sig);
        Py_ssize_t nt = PyBytes_GET_SIZE(sig) / 8;
        for (Py_ssize_t j = 1; j < nt; j++) {
            uint64_t h;
            memcpy(&h, p + 8 * j, 8);
            h += 1;
            size_t slot = (size_t)(h ^ (h >> 29)) & (size_t)(size - 1);
            while (table[slot] && table[slot] != h) slot = (slot + 1) & (size_t)(size - 1);
            if (table[slot]) {
                PyObject *v = PyLong_FromSsize_t(i);
                if (!v || PyList_Append(out, v)) {
                    Py_XDECREF(v);
                    goto fail;
                }
                Py_DECREF(v);
                break;
            }
        }
    }
    PyMem_Free(table);
    return out;
fail:
    PyMem_Free(table);
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(window_facts_doc,
"window_facts(infos, lo, hi, names, tails_of, relations, cap) -> list\n\n"
"Facts (head, rel, tail) of the window of mentions lo..hi-1 (infos[i][3]: concept, [6]: packed\n"
"hashes of the concept and its tails): heads in order of first mention; a head's tails in\n"
"``tails_of[head]`` that occur in the window, both with a name in ``names``, in order of first\n"
"mention; per pair the relations ``relations[(head, tail)]``; stop after the head that reaches\n"
"``cap``. The hashes only preselect: every kept fact is checked on the strings.");

static uint64_t sig_hash(PyObject *sig, Py_ssize_t j) {
    uint64_t h;
    memcpy(&h, PyBytes_AS_STRING(sig) + 8 * j, 8);
    return h;
}

static PyObject *window_facts(PyObject *self, PyObject *args) {
    PyObject *infos, *names, *tails_of, *relations;
    Py_ssize_t lo, hi, cap;
    if (!PyArg_ParseTuple(args, "O!nnO!O!O!n:window_facts", &PyList_Type, &infos, &lo, &hi, &PyDict_Type, &names,
                          &PyDict_Type, &tails_of, &PyDict_Type, &relations, &cap))
        return NULL;
    if (lo < 0 || hi > PyList_GET_SIZE(infos) || lo > hi) {
        PyErr_SetString(PyExc_IndexError, "window mention range out of range");
        return NULL;
    }
    Py_ssize_t m = hi - lo;
    uint64_t *hs = PyMem_Malloc(sizeof(uint64_t) * (size_t)(m ? m : 1));
    PyObject **cs = PyMem_Malloc(sizeof(PyObject *) * (size_t)(m ? m : 1));
    unsigned char *done = PyMem_Calloc((size_t)(m ? m : 1), 1);  /* concept of mention handled */
    Py_ssize_t *hit = NULL;
    PyObject *out = PyList_New(0), *seq = NULL;
    PyObject **hit_t = NULL;
    if (!hs || !cs || !done || !out) {
        if (out) PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *sig = info_item(infos, lo + i, 6), *c = info_item(infos, lo + i, 3);
        if (!sig || !c) goto fail;
        if (!PyBytes_Check(sig) || PyBytes_GET_SIZE(sig) < 8 || PyBytes_GET_SIZE(sig) % 8) {
            PyErr_Format(PyExc_TypeError, "signature of mention %zd is not packed int64 hashes", lo + i);
            goto fail;
        }
        hs[i] = sig_hash(sig, 0);
        cs[i] = c;
    }
    for (Py_ssize_t i = 0; i < m && PyList_GET_SIZE(out) < cap; i++) {
        if (done[i]) continue;
        PyObject *sig = PyTuple_GET_ITEM(PyList_GET_ITEM(infos, lo + i), 6);
        Py_ssize_t nt = PyBytes_GET_SIZE(sig) / 8;
        int any = 0;
        for (Py_ssize_t j = 1; j < nt && !any; j++) {
            uint64_t t = sig_hash(sig, j);
            for (Py_ssize_t q = 0; q < m; q++)
                if (hs[q] == t) {
                    any = 1;
                    break;
                }
        }
        if (!any) continue;  /* no tail of this concept may be in the window */
        PyObject *h = cs[i];
        for (Py_ssize_t q = i; q < m; q++) {  /* later mentions of the same concept: handled now */
            if (hs[q] != hs[i]) continue;
            int eq = q == i ? 1 : PyObject_RichCompareBool(cs[q], h, Py_EQ);
            if (eq < 0) goto fail;
            if (eq) done[q] = 1;
        }
        int r = PyDict_Contains(names, h);
        if (r < 0) goto fail;
        if (!r) continue;
        PyObject *outs = PyDict_GetItemWithError(tails_of, h);
        if (!outs) {
            if (PyErr_Occurred()) goto fail;
            continue;
        }
        if (!(seq = PySequence_Fast(outs, "tails_of values must be sequences"))) goto fail;
        Py_ssize_t nh = 0, ns = PySequence_Fast_GET_SIZE(seq);
        PyMem_Free(hit_t);
        PyMem_Free(hit);
        hit = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(ns ? ns : 1));
        if (!(hit_t = PyMem_Malloc(sizeof(PyObject *) * (size_t)(ns ? ns : 1))) || !hit) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t j = 0; j < ns; j++) {
            PyObject *t = PySequence_Fast_GET_ITEM(seq, j);
            Py_hash_t th = PyObject_Hash(t);
            if (th == -1) goto fail;
            Py_ssize_t first = -1;  /* the tail's first mention in the window */
            for (Py_ssize_t q = 0; q < m && first < 0; q++) {
                if (hs[q] != (uint64_t)th) continue;
                int eq = PyObject_RichCompareBool(cs[q], t, Py_EQ);
                if (eq < 0) goto fail;
                if (eq) first = q;
            }
            if (first < 0) continue;
            int same = PyObject_RichCompareBool(t, h, Py_EQ);
            if (same < 0) goto fail;
            if (same) continue;
            r = PyDict_Contains(names, t);
            if (r < 0) goto fail;
            if (!r) continue;
            /* insertion sort by first mention (stable: tails are few) */
            Py_ssize_t k = nh++;
            while (k > 0 && hit[k - 1] > first) {
                hit[k] = hit[k - 1];
                hit_t[k] = hit_t[k - 1];
                k--;
            }
            hit[k] = first;
            hit_t[k] = t;
        }
        for (Py_ssize_t j = 0; j < nh; j++) {
            PyObject *key = PyTuple_Pack(2, h, hit_t[j]);
            if (!key) goto fail;
            PyObject *rels = PyDict_GetItemWithError(relations, key);
            Py_DECREF(key);
            if (!rels) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "a tail has no relation to its head");
                goto fail;
            }
            PyObject *rs = PySequence_Fast(rels, "relations values must be sequences");
            if (!rs) goto fail;
            for (Py_ssize_t q = 0; q < PySequence_Fast_GET_SIZE(rs); q++) {
                PyObject *fact = PyTuple_Pack(3, h, PySequence_Fast_GET_ITEM(rs, q), hit_t[j]);
                if (!fact || PyList_Append(out, fact)) {
                    Py_XDECREF(fact);
                    Py_DECREF(rs);
                    goto fail;
                }
                Py_DECREF(fact);
            }
            Py_DECREF(rs);
        }
        Py_CLEAR(seq);
    }
    if (PyList_GET_SIZE(out) > cap && PyList_SetSlice(out, cap, PyList_GET_SIZE(out), NULL)) goto fail;
    PyMem_Free(hs);
    PyMem_Free(cs);
    PyMem_Free(done);
    PyMem_Free(hit);
    PyMem_Free(hit_t);
    return out;
fail:
    PyMem_Free(hs);
    PyMem_Free(cs);
    PyMem_Free(done);
    PyMem_Free(hit);
    PyMem_Free(hit_t);
    Py_XDECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

/* ---- fact lines ---------------------------------------------------------------------------- */
static PyObject *encode_basestring_fn;  /* json's C string encoder (ensure_ascii=False), for ids */

static int buf_str(Buf *b, PyObject *s) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    return u ? buf_put(b, u, n) : -1;
}

/* JSON literal of str ``s`` from ``cache`` (filled on a miss); a borrowed reference. */
static PyObject *json_literal(PyObject *cache, PyObject *s) {
    PyObject *v = PyDict_GetItemWithError(cache, s);
    if (v || PyErr_Occurred()) return v;
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "concept and relation ids must be str");
        return NULL;
    }
    v = PyObject_CallOneArg(encode_basestring_fn, s);
    if (!v) return NULL;
    int r = PyDict_SetItem(cache, s, v);
    Py_DECREF(v);
    return r ? NULL : v;  /* the cache holds it */
}

static PyObject *lookup(PyObject *dict, PyObject *key, const char *what) {
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (!v && !PyErr_Occurred()) PyErr_Format(PyExc_KeyError, "no %s for %R", what, key);
    if (v && !PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "the %s of %R is not a str", what, key);
        return NULL;
    }
    return v;
}

PyDoc_STRVAR(fact_line_doc,
"fact_line(prefix, body, spans, infos, lo, hi, ws, facts, names, labels, join, fact_lang_js, cache) -> bytes\n\n"
"One Fact record as a UTF-8 JSON line (no newline), ``prefix`` its '{\"id\":..,\"lang\":..' part: ``body`` (the window's text, starting at spans[lo]'s window\n"
"start ``ws`` = its offset in the document, passed as spans' offsets minus ``ws`` through\n"
"``lo``/``hi``: see fact.py) followed by '</s>' + head name + join + relation label + join +\n"
"tail name per fact (head, rel, tail); entities: spans[lo:hi] with format infos[i][5], then\n"
"head and tail of every fact; relations: one per fact. names/labels: concept -> name and\n"
"relation -> label in the fact language; cache: str -> JSON literal.");

static PyObject *fact_line(PyObject *self, PyObject *args) {
    PyObject *prefix, *body, *spans, *infos, *facts, *names, *labels, *join, *fl_js, *cache;
    Py_ssize_t lo, hi, ws;
    if (!PyArg_ParseTuple(args, "UUO!O!nnnO!O!O!UUO!:fact_line", &prefix, &body, &PyList_Type, &spans,
                          &PyList_Type, &infos, &lo, &hi, &ws, &PyList_Type, &facts, &PyDict_Type, &names,
                          &PyDict_Type, &labels, &join, &fl_js, &PyDict_Type, &cache))
        return NULL;
    if (lo < 0 || hi > PyList_GET_SIZE(spans) || hi > PyList_GET_SIZE(infos) || lo > hi) {
        PyErr_SetString(PyExc_IndexError, "window span range out of range");
        return NULL;
    }
    Buf ent = {NULL, 0, 0}, rel = {NULL, 0, 0};
    PyObject *pieces = PyList_New(0), *text = NULL, *sep = PyUnicode_FromString("</s>");
    if (!pieces || !sep || PyList_Append(pieces, body)) goto fail;
    for (Py_ssize_t i = lo; i < hi; i++) {
        Py_ssize_t s, e;
        PyObject *fmt = info_item(infos, i, 5);
        if (!fmt || span_offsets(spans, i, &s, &e)) goto fail;
        if ((i > lo && PUT(&ent, ",")) || buf_entity(&ent, fmt, s - ws, e - ws)) goto fail;
    }
    Py_ssize_t p = PyUnicode_GET_LENGTH(body), n_ents = hi - lo, lj = PyUnicode_GET_LENGTH(join);
    for (Py_ssize_t f = 0; f < PyList_GET_SIZE(facts); f++) {
        PyObject *fact = PyList_GET_ITEM(facts, f);
        if (!PyTuple_Check(fact) || PyTuple_GET_SIZE(fact) != 3) {
            PyErr_Format(PyExc_TypeError, "fact %zd is not a (head, rel, tail) tuple", f);
            goto fail;
        }
        PyObject *h = PyTuple_GET_ITEM(fact, 0), *r = PyTuple_GET_ITEM(fact, 1), *t = PyTuple_GET_ITEM(fact, 2);
        PyObject *hn = lookup(names, h, "name"), *rn = hn ? lookup(labels, r, "relation label") : NULL;
        PyObject *tn = rn ? lookup(names, t, "name") : NULL;
        if (!tn) goto fail;
        PyObject *hj = json_literal(cache, h), *rj = hj ? json_literal(cache, r) : NULL;
        PyObject *tj = rj ? json_literal(cache, t) : NULL;
        if (!tj) goto fail;
        Py_ssize_t hs = p + 4, rs = hs + PyUnicode_GET_LENGTH(hn) + lj, ts = rs + PyUnicode_GET_LENGTH(rn) + lj;
        p = ts + PyUnicode_GET_LENGTH(tn);
        if (PyList_Append(pieces, sep) || PyList_Append(pieces, hn) || PyList_Append(pieces, join) ||
            PyList_Append(pieces, rn) || PyList_Append(pieces, join) || PyList_Append(pieces, tn))
            goto fail;
        if ((ent.len && PUT(&ent, ",")) || PUT(&ent, "{\"start\":") || buf_int(&ent, hs) ||
            PUT(&ent, ",\"end\":") || buf_int(&ent, hs + PyUnicode_GET_LENGTH(hn)) ||
            PUT(&ent, ",\"concept\":") || buf_str(&ent, hj) || PUT(&ent, ",\"lang\":") ||
            buf_str(&ent, fl_js) || PUT(&ent, ",\"switched\":false},{\"start\":") || buf_int(&ent, ts) ||
            PUT(&ent, ",\"end\":") || buf_int(&ent, p) || PUT(&ent, ",\"concept\":") ||
            buf_str(&ent, tj) || PUT(&ent, ",\"lang\":") || buf_str(&ent, fl_js) ||
            PUT(&ent, ",\"switched\":false}"))
            goto fail;
        n_ents += 2;
        if ((f && PUT(&rel, ",")) || PUT(&rel, "{\"start\":") || buf_int(&rel, rs) ||
            PUT(&rel, ",\"end\":") || buf_int(&rel, rs + PyUnicode_GET_LENGTH(rn)) ||
            PUT(&rel, ",\"rel\":") || buf_str(&rel, rj) || PUT(&rel, ",\"lang\":") ||
            buf_str(&rel, fl_js) || PUT(&rel, ",\"head\":") || buf_int(&rel, n_ents - 2) ||
            PUT(&rel, ",\"tail\":") || buf_int(&rel, n_ents - 1) || PUT(&rel, "}"))
            goto fail;
    }
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    if (!empty) goto fail;
    text = PyUnicode_Join(empty, pieces);
    Py_DECREF(empty);
    if (!text) goto fail;
    PyObject *line = line_bytes(prefix, text, "fact", &ent, &rel);
    if (!line) goto fail;
    PyMem_Free(ent.data);
    PyMem_Free(rel.data);
    Py_DECREF(pieces);
    Py_DECREF(sep);
    Py_DECREF(text);
    return line;
fail:
    PyMem_Free(ent.data);
    PyMem_Free(rel.data);
    Py_XDECREF(pieces);
    Py_XDECREF(sep);
    Py_XDECREF(text);
    return NULL;
}

static int excluded_char(Py_UCS4 c, const Py_UCS4 *lo_hi, Py_ssize_t nr) {
    for (Py_ssize_t r = 0; r < nr; r++)
        if (c >= lo_hi[2 * r] && c <= lo_hi[2 * r + 1]) return 1;
    return 0;
}

/* ---- word-run marking ------------------------------------------------------------------------- */
PyDoc_STRVAR(mark_runs_doc,
"mark_runs(text, excluded) -> str | None\n\n"
"``text`` with a NUL before and after every maximal run of word characters: str.isalnum()\n"
"characters outside the code point ranges ``excluded`` (a tuple of (lo, hi) pairs, inclusive).\n"
"None when the text has no such character (it would be returned unchanged).");

static PyObject *mark_runs(PyObject *self, PyObject *args) {
    PyObject *text, *excluded;
    if (!PyArg_ParseTuple(args, "UO!:mark_runs", &text, &PyTuple_Type, &excluded)) return NULL;
    Py_ssize_t nr = PyTuple_GET_SIZE(excluded);
    Py_UCS4 lo_hi[64];
    if (nr > 32) {
        PyErr_SetString(PyExc_ValueError, "at most 32 excluded ranges");
        return NULL;
    }
    for (Py_ssize_t r = 0; r < nr; r++) {
        unsigned long lo, hi;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(excluded, r), "kk", &lo, &hi)) return NULL;
        lo_hi[2 * r] = (Py_UCS4)lo;
        lo_hi[2 * r + 1] = (Py_UCS4)hi;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), runs = 0;
    /* ASCII first (the common word characters), then the excluded ranges (cheap comparisons:
     * most characters of unspaced text fall in one), then the Unicode tables. */
#define IS_WORD(c)                                                                                       \
    ((c) < 128 ? (((c) | 32) - 'a' < 26u || (c) - '0' < 10u) : !excluded_char(c, lo_hi, nr) && Py_UNICODE_ISALNUM(c))
    int in_run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        int w = IS_WORD(c);
        if (w && !in_run) runs++;
        in_run = w;
    }
    if (!runs) Py_RETURN_NONE;
    PyObject *out = PyUnicode_New(n + 2 * runs, PyUnicode_MAX_CHAR_VALUE(text));
    if (!out) return NULL;
    int okind = PyUnicode_KIND(out);
    void *odata = PyUnicode_DATA(out);
    Py_ssize_t j = 0;
    in_run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        int w = IS_WORD(c);
        if (w != in_run) PyUnicode_WRITE(okind, odata, j++, 0);
        PyUnicode_WRITE(okind, odata, j++, c);
        in_run = w;
    }
    if (in_run) PyUnicode_WRITE(okind, odata, j++, 0);
#undef IS_WORD
    return out;
}

/* ---- per-key cache -------------------------------------------------------------------------- */
PyDoc_STRVAR(cached_infos_doc,
"cached_infos(cache, spans) -> list | None\n\n"
"[cache[key] for (start, end, key) in spans], or None when one of them is None (not cached yet).");

static PyObject *cached_infos(PyObject *self, PyObject *args) {
    PyObject *cache, *spans;
    if (!PyArg_ParseTuple(args, "O!O!:cached_infos", &PyList_Type, &cache, &PyList_Type, &spans)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(spans), nc = PyList_GET_SIZE(cache);
    Py_ssize_t *keys = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    PyObject *out = keys ? PyList_New(n) : NULL;
    if (!out) {
        PyMem_Free(keys);
        return keys ? NULL : PyErr_NoMemory();
    }
    /* Three passes, each prefetching what the next one reads: the cache slots, the info tuples,
     * then the objects the builders read next (formats, signatures). A large KB's cache does not
     * fit the CPU caches; issuing a document's misses together overlaps them. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sp = PyList_GET_ITEM(spans, i);
        if (!PyTuple_Check(sp) || PyTuple_GET_SIZE(sp) < 3) {
            PyErr_Format(PyExc_TypeError, "span %zd is not a (start, end, key) tuple", i);
            goto fail;
        }
        Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(sp, 2));
        if (k == -1 && PyErr_Occurred()) goto fail;
        if (k < 0 || k >= nc) {
            PyErr_Format(PyExc_IndexError, "key %zd of span %zd is not in the cache", k, i);
            goto fail;
        }
        keys[i] = k;
        __builtin_prefetch(&PyList_GET_ITEM(cache, k));
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *info = PyList_GET_ITEM(cache, keys[i]);
        if (info == Py_None) {
            PyMem_Free(keys);
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        __builtin_prefetch(info, 1);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *info = PyList_GET_ITEM(cache, keys[i]);
        Py_INCREF(info);
        PyList_SET_ITEM(out, i, info);
        if (PyTuple_Check(info))
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(info) && j < 8; j++) __builtin_prefetch(PyTuple_GET_ITEM(info, j));
    }
    PyMem_Free(keys);
    return out;
fail:
    PyMem_Free(keys);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"switch_entities", switch_entities, METH_VARARGS, switch_entities_doc},
    {"unmark_spans", unmark_spans, METH_VARARGS, unmark_spans_doc},
    {"mark_runs", mark_runs, METH_VARARGS, mark_runs_doc},
    {"cached_infos", cached_infos, METH_VARARGS, cached_infos_doc},
    {"sample_indices", sample_indices, METH_VARARGS, sample_indices_doc},
    {"fact_heads", fact_heads, METH_VARARGS, fact_heads_doc},
    {"window_facts", window_facts, METH_VARARGS, window_facts_doc},
    {"fact_line", fact_line, METH_VARARGS, fact_line_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kbioxlm._speedups",
                                    "Compiled inner loops of the corpus builders (see speedups.py).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *json = PyImport_ImportModule("json.encoder");
    if (!json) return NULL;
    encode_basestring_fn = PyObject_GetAttrString(json, "encode_basestring");
    Py_DECREF(json);
    if (!encode_basestring_fn) return NULL;
    return PyModule_Create(&module);
}
