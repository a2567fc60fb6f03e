/* The proxy's fast lane: the common case of the data path, compiled.
 *
 * `ClientBase` and `UpstreamBase` are the base classes of `proxy.connection.ClientConn` and
 * `proxy.upstream.UpstreamConn`. Their `data_received` handles exactly one shape of traffic itself:
 *
 *   an idle keep-alive client connection whose last plain request was forwarded (`plan`) and whose upstream
 *   connection is kept (`pinned`) sends one whole `GET` or `POST` head, HTTP/1.1, no credentials, no
 *   connection options, same Host, and either no body or a Content-Length body of any size (Gradio's
 *   `POST .../queue/join`, and its uploads), forwarded read by read as it comes, kept for one resend only while
 *   the request is within the Python path's RETRY_LIMIT, as that path keeps it; the Space answers with a response whose head comes whole in its
 *   first read and whose body has a Content-Length or is chunked (Gradio's SSE stream `.../queue/data`):
 *   that body is relayed read by read as it comes, unbuffered, while a strict chunk parser finds its end.
 *
 * That request is written upstream as the Python path would write it (same bytes: the kept header lines, then
 * the plan's own lines, then the body), and that response is written to the client with the Space's header
 * lines inserted. Anything else -- a byte this strict subset does not allow, a head split over two reads, a
 * chunked request body, a response that starts before the request body is in, a chunk extension or trailer, a response read until close, a 1xx/204/304, a
 * rate-limited client, an upgrade -- goes to the Python path (`_data_received`) before anything of that read
 * is consumed; an exchange already started here is first handed over (`_adopt`), with the response's framing
 * state when its body is under way (`resume_prefix`: bytes that put a fresh llhttp parser in the same state),
 * so the Python state machine owns every case but these. Nothing here decides policy: it replays the decision
 * the Python path made for the previous request (see `proxy.exchange.Plan` and `plain`).
 *
 * Once the Python path has decided an upgrade and spliced the two connections (a WebSocket), the bytes of both
 * directions are relayed here as they come (`relay`), with the idle deadline the Python path would set.
 *
 * Grammar accepted (a subset of RFC 9112 that llhttp parses identically): tokens for methods and field names,
 * field values of VCHAR/SP/HTAB (leading whitespace dropped, as llhttp does), CRLF line ends, origin-form targets
 * of VCHAR without '#'.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#define MAX_FAST_HEAD 16384
#define MAX_FAST_HEADERS 100

static PyObject *s_write, *s_time, *s_is_closing, *s_table, *s_buckets, *s_active, *s_note_activity,
    *s_data_received_slow, *s_adopt, *s_access_log, *s_buf, *s_stamp, *s_flush_bytes, *s_flush, *s_host, *s_upstream, *s_added, *s_extra, *s_until, *s_route,
    *s_space_id;
/* set by `configure` from proxy.pages.STATUS_PATH and proxy.decide.KEEP_ALIVE */
static char status_path[64], keep_alive[64];
static Py_ssize_t status_path_len, keep_alive_len;
/* set by `configure` from proxy.exchange.RETRY_LIMIT: a request (head and body) up to this size is kept to resend
 * once on a stale kept connection, as the Python path keeps it (`ClientConn._body`); a larger one is streamed
 * and never resent */
static long long retry_limit;

/* RFC 9110 tchar */
static unsigned char is_tchar[256];

static void init_tables(void) {
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = '0'; c <= '9'; c++) is_tchar[c] = 1;
    for (int c = 'a'; c <= 'z'; c++) is_tchar[c] = 1;
    for (int c = 'A'; c <= 'Z'; c++) is_tchar[c] = 1;
    for (const char *p = extra; *p; p++) is_tchar[(unsigned char)*p] = 1;
}

static int name_is(const char *p, Py_ssize_t n, const char *lower) {
    Py_ssize_t m = (Py_ssize_t)strlen(lower);
    if (n != m) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != lower[i]) return 0;
    }
    return 1;
}

/* One header line at i (up to end): name, value (leading whitespace skipped), and the index after its CRLF; 0 if the line is
 * outside the accepted grammar. */
typedef struct {
    const char *name;
    Py_ssize_t name_len;
    const char *value;
    Py_ssize_t value_len;
} Field;

static Py_ssize_t parse_field(const char *buf, Py_ssize_t i, Py_ssize_t end, Field *f) {
    Py_ssize_t start = i;
    while (i < end && is_tchar[(unsigned char)buf[i]]) i++;
    if (i == start || i >= end || buf[i] != ':') return 0;
    f->name = buf + start;
    f->name_len = i - start;
    i++;
    while (i < end && (buf[i] == ' ' || buf[i] == '\t')) i++;
    Py_ssize_t vstart = i;
    while (i < end) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\r') break;
        if (!(c == '\t' || (c >= 0x20 && c < 0x7f))) return 0;
        i++;
    }
    if (i + 1 >= end || buf[i] != '\r' || buf[i + 1] != '\n') return 0;
    f->value = buf + vstart;
    f->value_len = i - vstart;  /* llhttp keeps trailing whitespace: so does the Python path */
    return i + 2;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Request side                                                                                            */

typedef struct {
    PyObject_HEAD
    PyObject *transport, *srv, *loop, *parser, *queue, *pinned, *up, *plan, *ip;
    PyObject *fx_up, *fx_url, *fx_head;
    double fx_start, deadline, keepalive_timeout, stream_idle_timeout, pool_idle, rl_rate, rl_burst;
    long long fx_left;  /* body bytes of the lane's request still to come from the client */
    char fx_kept;  /* fx_head holds all of the request sent so far (it may be resent); else its start only */
    char closing, spliced, in_head, lane_on, log_access;
    /* the plan's fields, borrowed from `cplan` (a frozen dataclass: they live as long as it does) */
    PyObject *cplan, *c_table, *c_host, *c_upstream, *c_added, *c_extra, *c_space;
    double c_until;
} ClientBase;

typedef struct {
    PyObject_HEAD
    PyObject *client, *transport, *key;
    double idle_since;
    char reusable, fast, spliced;
    /* the response the lane is relaying: its status (0: none under way) and framing state (see body_step) */
    int rstatus;
    char rframe, rstate, rdigits;
    long long rleft;
} UpstreamBase;

static PyTypeObject UpstreamBaseType;

static int load_plan(ClientBase *self, PyObject *plan) {
    if (self->cplan == plan) return 0;
    Py_CLEAR(self->cplan);
    PyObject *table = PyObject_GetAttr(plan, s_table);
    PyObject *host = PyObject_GetAttr(plan, s_host);
    PyObject *upstream = PyObject_GetAttr(plan, s_upstream);
    PyObject *added = PyObject_GetAttr(plan, s_added);
    PyObject *extra = PyObject_GetAttr(plan, s_extra);
    PyObject *until = PyObject_GetAttr(plan, s_until);
    PyObject *route = PyObject_GetAttr(plan, s_route);
    PyObject *space = route ? PyObject_GetAttr(route, s_space_id) : NULL;
    int ok = table && host && upstream && added && extra && until && space && PyUnicode_Check(host) &&
             PyBytes_Check(added) && PyBytes_Check(extra) && PyFloat_Check(until) && PyUnicode_Check(space);
    if (ok) {
        self->cplan = Py_NewRef(plan);
        self->c_table = table, self->c_host = host, self->c_upstream = upstream, self->c_added = added;
        self->c_extra = extra, self->c_space = space, self->c_until = PyFloat_AS_DOUBLE(until);
    }
    /* the plan holds every one of them: keep borrowed pointers only */
    Py_XDECREF(table); Py_XDECREF(host); Py_XDECREF(upstream); Py_XDECREF(added); Py_XDECREF(extra);
    Py_XDECREF(until); Py_XDECREF(route); Py_XDECREF(space);
    if (!ok) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

static double loop_time(PyObject *loop) {
    PyObject *t = PyObject_CallMethodNoArgs(loop, s_time);
    if (t == NULL) return -1.0;
    double now = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return now;
}

/* Whether a latin-1 str equals the bytes [p, p+n). */
static int str_equals(PyObject *s, const char *p, Py_ssize_t n) {
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND || PyUnicode_GET_LENGTH(s) != n) return 0;
    return memcmp(PyUnicode_1BYTE_DATA(s), p, (size_t)n) == 0;
}

/* The token bucket of `proxy.ratelimit.take` for this client's IP: 1 if a token was spent, 0 if the bucket
 * is empty (nothing changed: the Python path answers the 429), -1 on error. */
static int take_token(ClientBase *self, double now) {
    PyObject *buckets = PyObject_GetAttr(self->srv, s_buckets);
    if (buckets == NULL) return -1;
    if (!PyDict_Check(buckets)) {
        Py_DECREF(buckets);
        return 0;
    }
    double tokens;
    PyObject *b = PyDict_GetItemWithError(buckets, self->ip);
    if (b != NULL && PyTuple_Check(b) && PyTuple_GET_SIZE(b) == 2) {
        double have = PyFloat_AsDouble(PyTuple_GET_ITEM(b, 0)), at = PyFloat_AsDouble(PyTuple_GET_ITEM(b, 1));
        tokens = have + (now - at) * self->rl_rate;
        if (tokens > self->rl_burst) tokens = self->rl_burst;
    } else if (b == NULL && !PyErr_Occurred()) {
        tokens = self->rl_burst;
    } else {
        Py_DECREF(buckets);
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyErr_Occurred() || tokens < 1) {
        Py_DECREF(buckets);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *nb = Py_BuildValue("(dd)", tokens - 1, now);
    int rc = nb ? PyDict_SetItem(buckets, self->ip, nb) : -1;
    Py_XDECREF(nb);
    Py_DECREF(buckets);
    return rc < 0 ? -1 : 1;
}

static int note_activity(ClientBase *self, double now) {
    PyObject *active = PyObject_GetAttr(self->srv, s_active);
    if (active == NULL) return -1;
    PyObject *last = PyDict_Check(active) ? PyDict_GetItemWithError(active, self->c_space) : NULL;
    int due = last == NULL || !PyFloat_Check(last) || now - PyFloat_AS_DOUBLE(last) >= 1.0;
    Py_DECREF(active);
    if (PyErr_Occurred()) return -1;
    if (!due) return 0;
    PyObject *nowf = PyFloat_FromDouble(now);
    if (nowf == NULL) return -1;
    PyObject *r = PyObject_CallMethodObjArgs(self->srv, s_note_activity, self->c_space, nowf, NULL);
    Py_DECREF(nowf);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* What a request header means to the lane: the Python path's `proxy.decide._STRIP` and `scan`. A header in
 * neither list is forwarded as sent. */
typedef enum { HOST, DROP, KEEP_ALIVE_ONLY, OTHER_PATH, LENGTH } Rule;
typedef struct {
    const char *name;
    Rule rule;
    Py_ssize_t len;  /* set by init_rules */
} NameRule;
static NameRule REQUEST_RULES[] = {
    {"host", HOST},
    /* hop-by-hop, or set by the proxy itself: never forwarded */
    {"keep-alive", DROP}, {"proxy-connection", DROP}, {"te", DROP}, {"proxy-authorization", DROP},
    {"x-forwarded-for", DROP}, {"x-forwarded-proto", DROP}, {"x-forwarded-host", DROP},
    {"x-forwarded-port", DROP}, {"forwarded", DROP}, {"x-real-ip", DROP}, {"x-ip-token", DROP},
    /* credentials, a body, connection options, probes: decided by the Python path */
    {"authorization", OTHER_PATH}, {"x-hf-authorization", OTHER_PATH}, {"cookie", OTHER_PATH},
    {"connection", KEEP_ALIVE_ONLY},  /* what browsers and most clients send: the lane's own default */
    {"content-length", LENGTH},  /* forwarded as sent; the body must have come whole with the head */
    {"upgrade", OTHER_PATH},
    {"transfer-encoding", OTHER_PATH}, {"expect", OTHER_PATH}, {"x-spacehost-probe", OTHER_PATH},
    {NULL, HOST},
};

static void init_rules(void) {
    for (NameRule *r = REQUEST_RULES; r->name; r++) r->len = (Py_ssize_t)strlen(r->name);
}

/* The offset just past the first CRLFCRLF in buf[0, n), or 0 */
static Py_ssize_t head_end(const char *buf, Py_ssize_t n) {
    Py_ssize_t limit = n < MAX_FAST_HEAD ? n : MAX_FAST_HEAD;
    for (Py_ssize_t i = 0; i + 4 <= limit; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') return i + 4;
    return 0;
}

/* A Content-Length value of 1 to 15 digits, or -1 */
static long long parse_length(const char *p, Py_ssize_t n) {
    if (n == 0 || n > 15) return -1;
    long long v = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (p[k] < '0' || p[k] > '9') return -1;
        v = v * 10 + (p[k] - '0');
    }
    return v;
}

/* Parse `data` as one fast-lane request (a whole head, and what came of its Content-Length body: `left` gets
 * how much is still to come) and build what goes to the Space. Returns a new bytes object, Py_None (borrowed: not this lane's) or NULL with an exception
 * set. `url` gets a new reference on success. */
static PyObject *build_request(ClientBase *self, const char *buf, Py_ssize_t n, PyObject **url, long long *left) {
    Py_ssize_t m;  /* the method's length */
    if (n >= 5 && memcmp(buf, "GET /", 5) == 0) m = 3;
    else if (n >= 6 && memcmp(buf, "POST /", 6) == 0) m = 4;
    else return Py_None;
    Py_ssize_t hn = head_end(buf, n);
    if (hn < m + 15) return Py_None;
    Py_ssize_t i = m + 1;
    while (i < hn) {
        unsigned char c = (unsigned char)buf[i];
        if (c == ' ') break;
        if (c <= 0x20 || c >= 0x7f || c == '#') return Py_None;
        i++;
    }
    Py_ssize_t url_end = i, u0 = m + 1;
    if (status_path_len && url_end - u0 >= status_path_len && memcmp(buf + u0, status_path, status_path_len) == 0)
        return Py_None;
    for (Py_ssize_t k = u0; k + 6 <= url_end; k++)
        if (buf[k] == '_' && memcmp(buf + k, "__sign", 6) == 0) return Py_None;
    if (hn - i < 11 || memcmp(buf + i, " HTTP/1.1\r\n", 11) != 0) return Py_None;
    i += 11;
    Field fields[MAX_FAST_HEADERS];
    char keep[MAX_FAST_HEADERS];
    int count = 0, host_seen = 0;
    long long length = -1;
    Py_ssize_t out_len = url_end + 11;  /* method + " " + url + " HTTP/1.1\r\n" */
    Py_ssize_t end = hn - 2;  /* the final CRLF */
    while (i < end) {
        if (count == MAX_FAST_HEADERS) return Py_None;
        Field *f = &fields[count];
        Py_ssize_t next = parse_field(buf, i, end, f);
        if (next == 0) return Py_None;
        i = next;
        int k = 1;
        for (const NameRule *r = REQUEST_RULES; r->name; r++) {
            if (r->len != f->name_len || !name_is(f->name, f->name_len, r->name)) continue;
            if (r->rule == OTHER_PATH) return Py_None;
            if (r->rule == DROP) k = 0;
            else if (r->rule == KEEP_ALIVE_ONLY) {
                if (!name_is(f->value, f->value_len, "keep-alive")) return Py_None;
                k = 0;
            } else if (r->rule == LENGTH) {
                if (length >= 0 || (length = parse_length(f->value, f->value_len)) < 0) return Py_None;
            } else if (host_seen++ || !str_equals(self->c_host, f->value, f->value_len)) return Py_None;  /* HOST */
            break;
        }
        keep[count++] = (char)k;
        if (k) out_len += f->name_len + 2 + f->value_len + 2;
    }
    if (length < 0) length = 0;
    if (i != end || !host_seen || n - hn > length) return Py_None;
    *left = length - (n - hn);  /* the rest of the body follows in later reads (`client_data_received`) */
    Py_ssize_t added_len = PyBytes_GET_SIZE(self->c_added);
    out_len += added_len + keep_alive_len + (n - hn);
    PyObject *head = PyBytes_FromStringAndSize(NULL, out_len);
    if (head == NULL) return NULL;
    char *o = PyBytes_AS_STRING(head);
    memcpy(o, buf, (size_t)url_end), o += url_end;
    memcpy(o, " HTTP/1.1\r\n", 11), o += 11;
    for (int k = 0; k < count; k++) {
        if (!keep[k]) continue;
        Field *f = &fields[k];
        memcpy(o, f->name, (size_t)f->name_len), o += f->name_len;
        *o++ = ':', *o++ = ' ';
        memcpy(o, f->value, (size_t)f->value_len), o += f->value_len;
        *o++ = '\r', *o++ = '\n';
    }
    memcpy(o, PyBytes_AS_STRING(self->c_added), (size_t)added_len), o += added_len;
    memcpy(o, keep_alive, (size_t)keep_alive_len), o += keep_alive_len;
    memcpy(o, buf + hn, (size_t)(n - hn));  /* the body, as llhttp hands it to the Python path */
    *url = PyBytes_FromStringAndSize(buf + u0, url_end - u0);
    if (*url == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    return head;
}

static PyObject *slow(PyObject *self, PyObject *data) {
    return PyObject_CallMethodOneArg(self, s_data_received_slow, data);
}

/* 1 if the kept upstream connection may carry the next request, 0 if not, -1 on error */
static int pinned_usable(ClientBase *self, double now) {
    PyObject *pinned = self->pinned;
    if (pinned == NULL || pinned == Py_None || !PyObject_TypeCheck(pinned, &UpstreamBaseType)) return 0;
    UpstreamBase *up = (UpstreamBase *)pinned;
    if (up->transport == NULL || up->transport == Py_None || !up->reusable || up->fast) return 0;
    if (now - up->idle_since > self->pool_idle) return 0;
    int same = PyObject_RichCompareBool(up->key, self->c_upstream, Py_EQ);  /* equal after a table swap */
    if (same <= 0) return same;
    PyObject *closing = PyObject_CallMethodNoArgs(up->transport, s_is_closing);
    if (closing == NULL) return -1;
    int r = closing == Py_False;
    Py_DECREF(closing);
    return r;
}

/* Bytes of an upgraded connection (a WebSocket the Python path decided and spliced), relayed as they come: the
 * write, then the stream's idle deadline, as the Python paths of both sides do. */
static PyObject *relay(ClientBase *c, PyObject *transport, PyObject *data) {
    Py_INCREF(c);
    PyObject *r = PyObject_CallMethodOneArg(transport, s_write, data);
    double now = r != NULL ? loop_time(c->loop) : -1.0;
    if (r != NULL && !(now < 0 && PyErr_Occurred())) c->deadline = now + c->stream_idle_timeout;
    Py_XDECREF(r);
    Py_DECREF(c);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *client_data_received(ClientBase *self, PyObject *data) {
    if (self->spliced && self->lane_on && !self->closing && self->up != NULL &&
        PyObject_TypeCheck(self->up, &UpstreamBaseType)) {
        PyObject *t = ((UpstreamBase *)self->up)->transport;
        if (t != NULL && t != Py_None) return relay(self, t, data);
    }
    if (self->fx_up != NULL && self->fx_up != Py_None && self->fx_left > 0 && PyBytes_CheckExact(data) &&
        PyObject_TypeCheck(self->fx_up, &UpstreamBaseType)) {
        /* the rest of the lane's request body, forwarded as it comes (kept with the head for a resend while the
         * request is within `retry_limit`: an upload is streamed, never held) */
        PyObject *t = ((UpstreamBase *)self->fx_up)->transport;
        Py_ssize_t n = PyBytes_GET_SIZE(data), take = n < self->fx_left ? n : (Py_ssize_t)self->fx_left;
        if (t != NULL && t != Py_None) {
            PyObject *part = take == n ? Py_NewRef(data) : PyBytes_FromStringAndSize(PyBytes_AS_STRING(data), take);
            if (part == NULL) return NULL;
            if (self->fx_kept) {
                PyObject *sent = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(self->fx_head) + take);
                if (sent == NULL) {
                    Py_DECREF(part);
                    return NULL;
                }
                memcpy(PyBytes_AS_STRING(sent), PyBytes_AS_STRING(self->fx_head), PyBytes_GET_SIZE(self->fx_head));
                memcpy(PyBytes_AS_STRING(sent) + PyBytes_GET_SIZE(self->fx_head), PyBytes_AS_STRING(data), take);
                Py_XSETREF(self->fx_head, sent);
            }
            self->fx_left -= take;
            PyObject *r = PyObject_CallMethodOneArg(t, s_write, part);
            Py_DECREF(part);
            if (r == NULL) return NULL;
            Py_DECREF(r);
            if (take == n) Py_RETURN_NONE;
            PyObject *rest = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + take, n - take);
            if (rest == NULL) return NULL;
            r = PyObject_CallMethodNoArgs((PyObject *)self, s_adopt);  /* a pipelined request follows */
            if (r == NULL) {
                Py_DECREF(rest);
                return NULL;
            }
            Py_DECREF(r);
            r = slow((PyObject *)self, rest);
            Py_DECREF(rest);
            return r;
        }
    }
    if (self->fx_up != NULL && self->fx_up != Py_None) {
        /* more bytes while the lane's exchange is in flight (a pipelined request): the Python path queues
         * them behind it, so it must own that exchange first */
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, s_adopt);
        if (r == NULL) return NULL;
        Py_DECREF(r);
        goto take_slow;
    }
    if (!self->lane_on || self->closing || self->spliced || self->in_head || !PyBytes_CheckExact(data) ||
        self->parser == NULL || self->parser == Py_None || self->plan == NULL || self->plan == Py_None ||
        self->pinned == NULL || self->pinned == Py_None || self->transport == NULL)
        goto take_slow;
    if (self->queue == NULL || PyObject_Length(self->queue) != 0) {
        PyErr_Clear();
        goto take_slow;
    }
    if (load_plan(self, self->plan) < 0) goto take_slow;
    double now = loop_time(self->loop);
    if (now < 0 && PyErr_Occurred()) return NULL;
    if (now >= self->c_until) goto take_slow;
    PyObject *table = PyObject_GetAttr(self->srv, s_table);
    if (table == NULL) return NULL;
    Py_DECREF(table);
    if (table != self->c_table) goto take_slow;
    int usable = pinned_usable(self, now);
    if (usable < 0) return NULL;
    if (!usable) goto take_slow;
    PyObject *url = NULL;
    long long left = 0;
    PyObject *head = build_request(self, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), &url, &left);
    if (head == NULL) return NULL;
    if (head == Py_None) goto take_slow;
    if (self->rl_rate >= 0) {
        int ok = take_token(self, now);
        if (ok <= 0) {
            Py_DECREF(head); Py_DECREF(url);
            if (ok < 0) return NULL;
            goto take_slow;  /* the Python path answers 429 */
        }
    }
    if (note_activity(self, now) < 0) {
        Py_DECREF(head); Py_DECREF(url);
        return NULL;
    }
    UpstreamBase *up = (UpstreamBase *)self->pinned;  /* steal the reference: it moves to fx_up */
    self->pinned = Py_NewRef(Py_None);
    Py_XSETREF(self->fx_up, (PyObject *)up);
    Py_XSETREF(self->up, Py_NewRef((PyObject *)up));
    Py_XSETREF(up->client, Py_NewRef((PyObject *)self));
    up->fast = 1;
    Py_XSETREF(self->fx_url, url);
    Py_XSETREF(self->fx_head, Py_NewRef(head));
    self->fx_left = left;
    self->fx_kept = PyBytes_GET_SIZE(head) + left <= retry_limit;  /* as `ClientConn._body` keeps `ex.sent` */
    self->fx_start = now;
    self->deadline = now + self->stream_idle_timeout;
    PyObject *r = PyObject_CallMethodOneArg(up->transport, s_write, head);
    Py_DECREF(head);
    if (r == NULL) return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
take_slow:
    return slow((PyObject *)self, data);
}

static int client_traverse(ClientBase *self, visitproc visit, void *arg) {
    Py_VISIT(self->transport); Py_VISIT(self->srv); Py_VISIT(self->loop); Py_VISIT(self->parser);
    Py_VISIT(self->queue); Py_VISIT(self->pinned); Py_VISIT(self->up); Py_VISIT(self->plan); Py_VISIT(self->ip);
    Py_VISIT(self->fx_up); Py_VISIT(self->fx_url); Py_VISIT(self->fx_head); Py_VISIT(self->cplan);
    return 0;
}

static int client_clear(ClientBase *self) {
    Py_CLEAR(self->transport); Py_CLEAR(self->srv); Py_CLEAR(self->loop); Py_CLEAR(self->parser);
    Py_CLEAR(self->queue); Py_CLEAR(self->pinned); Py_CLEAR(self->up); Py_CLEAR(self->plan); Py_CLEAR(self->ip);
    Py_CLEAR(self->fx_up); Py_CLEAR(self->fx_url); Py_CLEAR(self->fx_head); Py_CLEAR(self->cplan);
    return 0;
}

static void client_dealloc(ClientBase *self) {
    PyObject_GC_UnTrack(self);
    client_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define OBJ(name) {#name, T_OBJECT, offsetof(ClientBase, name), 0, NULL}
#define DBL(name) {#name, T_DOUBLE, offsetof(ClientBase, name), 0, NULL}
#define BOOL(name) {#name, T_BOOL, offsetof(ClientBase, name), 0, NULL}
static PyMemberDef client_members[] = {
    OBJ(transport), OBJ(srv), OBJ(loop), OBJ(parser), OBJ(queue), OBJ(pinned), OBJ(up), OBJ(plan), OBJ(ip),
    OBJ(fx_up), OBJ(fx_url), OBJ(fx_head),
    {"fx_left", T_LONGLONG, offsetof(ClientBase, fx_left), 0, NULL},
    {"fx_kept", T_BOOL, offsetof(ClientBase, fx_kept), 0, NULL},
    DBL(fx_start), DBL(deadline), DBL(keepalive_timeout), DBL(stream_idle_timeout), DBL(pool_idle), DBL(rl_rate),
    DBL(rl_burst),
    BOOL(closing), BOOL(spliced), BOOL(in_head), BOOL(lane_on), BOOL(log_access),
    {NULL, 0, 0, 0, NULL},
};
#undef OBJ
#undef DBL
#undef BOOL

static PyMethodDef client_methods[] = {
    {"data_received", (PyCFunction)client_data_received, METH_O,
     "Forward a fast-lane request, or hand the bytes to `_data_received`."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ClientBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._lane.ClientBase",
    .tp_basicsize = sizeof(ClientBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Client connection state the fast lane reads, and its data_received.",
    .tp_traverse = (traverseproc)client_traverse,
    .tp_clear = (inquiry)client_clear,
    .tp_dealloc = (destructor)client_dealloc,
    .tp_members = client_members,
    .tp_methods = client_methods,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------------------ */
/* Response side                                                                                           */

enum { F_LENGTH = 1, F_CHUNKED };
/* where the body stands: in a chunk-size line (none or some digits read, or its CR read), in data (`rleft`
 * bytes left), after data (CR or LF due), after the last chunk's size line (the final CRLF due), ended */
enum { B_SIZE0, B_SIZE, B_SIZE_LF, B_DATA, B_DATA_CR, B_DATA_LF, B_LAST_CR, B_LAST_LF, B_END };

typedef struct {
    char frame, state, digits;
    long long left;
} Body;

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Advance `b` over buf[0, n): 1 if every byte fits the strict framing (a chunked body of bare hex sizes, no
 * extension, no trailer) and none lies past the body's end, else 0 (`b` is then meaningless). */
static int body_step(Body *b, const char *buf, Py_ssize_t n) {
    if (b->frame == F_LENGTH) {
        if (n > b->left) return 0;
        b->left -= n;
        b->state = b->left ? B_DATA : B_END;
        return 1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        int v;
        switch (b->state) {
        case B_SIZE0:
        case B_SIZE:
            if ((v = hexval(c)) >= 0) {
                if (b->digits == 15) return 0;
                b->left = b->left * 16 + v, b->digits++, b->state = B_SIZE;
            } else if (c == '\r' && b->state == B_SIZE) {
                b->state = B_SIZE_LF;
            } else {
                return 0;
            }
            break;
        case B_SIZE_LF:
            if (c != '\n') return 0;
            b->digits = 0, b->state = b->left ? B_DATA : B_LAST_CR;
            break;
        case B_DATA: {
            Py_ssize_t take = n - i < b->left ? n - i : (Py_ssize_t)b->left;
            i += take - 1, b->left -= take;
            if (b->left == 0) b->state = B_DATA_CR;
            break;
        }
        case B_DATA_CR: if (c != '\r') return 0; b->state = B_DATA_LF; break;
        case B_DATA_LF: if (c != '\n') return 0; b->state = B_SIZE0, b->left = 0; break;
        case B_LAST_CR: if (c != '\r') return 0; b->state = B_LAST_LF; break;
        case B_LAST_LF: if (c != '\n') return 0; b->state = B_END; break;
        default: return 0;  /* B_END: bytes after the end of the response */
        }
    }
    return 1;
}

/* Whether `data` starts with a whole response head of the accepted shape: sets the offset of the head's final
 * CRLF, the status and the body's initial framing state. */
static int response_head(const char *buf, Py_ssize_t n, Py_ssize_t *final_crlf, int *status, Body *body) {
    if (n < 19 || memcmp(buf, "HTTP/1.1 ", 9) != 0) return 0;
    for (int k = 9; k < 12; k++)
        if (buf[k] < '0' || buf[k] > '9') return 0;
    int code = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (code < 200 || code > 599 || code == 204 || code == 304 || buf[12] != ' ') return 0;
    Py_ssize_t i = 13;
    while (i < n && buf[i] != '\r') {
        unsigned char c = (unsigned char)buf[i];
        if (!(c == '\t' || (c >= 0x20 && c < 0x7f))) return 0;
        i++;
    }
    if (i + 1 >= n || buf[i + 1] != '\n') return 0;
    i += 2;
    long long length = -1;
    int chunked = 0;
    Py_ssize_t limit = n < MAX_FAST_HEAD ? n : MAX_FAST_HEAD;
    int count = 0;
    while (1) {
        if (i + 1 >= limit) return 0;
        if (buf[i] == '\r') {
            if (buf[i + 1] != '\n') return 0;
            break;
        }
        if (++count > MAX_FAST_HEADERS) return 0;
        Field f;
        Py_ssize_t next = parse_field(buf, i, limit, &f);
        if (next == 0) return 0;
        if (f.name_len == 14 && name_is(f.name, f.name_len, "content-length")) {
            if (length >= 0 || (length = parse_length(f.value, f.value_len)) < 0) return 0;
        } else if (f.name_len == 17 && name_is(f.name, f.name_len, "transfer-encoding")) {
            if (chunked++ || !name_is(f.value, f.value_len, "chunked")) return 0;
        } else if ((f.name_len == 10 && name_is(f.name, f.name_len, "connection")) ||
                   (f.name_len == 16 && name_is(f.name, f.name_len, "proxy-connection")) ||
                   (f.name_len == 7 && name_is(f.name, f.name_len, "upgrade"))) {
            return 0;
        }
        i = next;
    }
    if (chunked == (length >= 0)) return 0;  /* both (llhttp refuses) or neither (read until close) */
    *final_crlf = i;
    *status = code;
    body->frame = chunked ? F_CHUNKED : F_LENGTH;
    body->state = chunked ? B_SIZE0 : (length ? B_DATA : B_END);
    body->left = chunked ? 0 : length;
    body->digits = 0;
    return 1;
}

/* The access log line of an exchange the lane completed, appended to `srv.access_log.buf` in the format of
 * `proxy.accesslog.AccessLog.add` (the lane's IP, Host and target are ASCII: UTF-8 as they are). */
static int log_exchange(ClientBase *c, int status, double ms) {
    PyObject *log = PyObject_GetAttr(c->srv, s_access_log);
    if (log == NULL) return -1;
    PyObject *buf = log != Py_None ? PyObject_GetAttr(log, s_buf) : NULL;
    PyObject *stamp = buf ? PyObject_GetAttr(log, s_stamp) : NULL;
    PyObject *limit = stamp ? PyObject_GetAttr(log, s_flush_bytes) : NULL;
    int rc = -1;
    if (log == Py_None) {
        rc = 0;
        goto out;
    }
    if (limit == NULL) goto out;
    Py_ssize_t ip_len, host_len;
    const char *ip = PyUnicode_Check(c->ip) ? PyUnicode_AsUTF8AndSize(c->ip, &ip_len) : NULL;
    const char *host = ip ? PyUnicode_AsUTF8AndSize(c->c_host, &host_len) : NULL;
    if (host == NULL || !PyByteArray_Check(buf) || !PyBytes_Check(stamp) || !PyBytes_Check(c->fx_url)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "access log fields of unexpected types");
        goto out;
    }
    char tail[64];
    int tail_len = snprintf(tail, sizeof(tail), " %d %.1fms\n", status, ms);
    if (tail_len < 0 || tail_len >= (int)sizeof(tail)) tail_len = snprintf(tail, sizeof(tail), " %d ?ms\n", status);
    Py_ssize_t stamp_len = PyBytes_GET_SIZE(stamp), url_len = PyBytes_GET_SIZE(c->fx_url);
    Py_ssize_t old = PyByteArray_GET_SIZE(buf);
    Py_ssize_t m = PyBytes_Check(c->fx_head) && PyBytes_AS_STRING(c->fx_head)[0] == 'P' ? 4 : 3;  /* POST, GET */
    Py_ssize_t line = stamp_len + 1 + ip_len + m + 2 + host_len + url_len + tail_len;
    if (PyByteArray_Resize(buf, old + line) < 0) goto out;
    char *o = PyByteArray_AS_STRING(buf) + old;
    memcpy(o, PyBytes_AS_STRING(stamp), (size_t)stamp_len), o += stamp_len;
    *o++ = ' ';
    memcpy(o, ip, (size_t)ip_len), o += ip_len;
    *o++ = ' ';
    memcpy(o, PyBytes_AS_STRING(c->fx_head), (size_t)m), o += m;
    *o++ = ' ';
    memcpy(o, host, (size_t)host_len), o += host_len;
    memcpy(o, PyBytes_AS_STRING(c->fx_url), (size_t)url_len), o += url_len;
    memcpy(o, tail, (size_t)tail_len);
    rc = 0;
    long long most = PyLong_AsLongLong(limit);
    if (most == -1 && PyErr_Occurred()) {
        rc = -1;
    } else if (old + line >= most) {
        PyObject *r = PyObject_CallMethodNoArgs(log, s_flush);
        if (r == NULL) rc = -1;
        Py_XDECREF(r);
    }
out:
    Py_DECREF(log);
    Py_XDECREF(buf);
    Py_XDECREF(stamp);
    Py_XDECREF(limit);
    return rc;
}

static PyObject *upstream_slow(PyObject *self, PyObject *client, PyObject *data) {
    PyObject *r = PyObject_CallMethodNoArgs(client, s_adopt);
    if (r == NULL) return NULL;
    Py_DECREF(r);
    return slow(self, data);
}

/* The exchange is over: the upstream connection goes back to its client, which waits for its next request. */
static int finish(UpstreamBase *self, ClientBase *c, double now) {
    int status = self->rstatus;
    self->fast = 0;
    self->rstatus = 0;
    self->idle_since = now;
    Py_CLEAR(self->client);
    Py_XSETREF(c->up, Py_NewRef(Py_None));
    Py_XSETREF(c->pinned, c->fx_up);  /* the reference fx_up held */
    c->fx_up = Py_NewRef(Py_None);
    c->deadline = now + c->keepalive_timeout;
    return c->log_access ? log_exchange(c, status, (now - c->fx_start) * 1000) : 0;
}

static PyObject *upstream_data_received(UpstreamBase *self, PyObject *data) {
    if (self->spliced && self->client != NULL && PyObject_TypeCheck(self->client, &ClientBaseType) &&
        self->transport != NULL && self->transport != Py_None) {
        ClientBase *c = (ClientBase *)self->client;
        if (c->lane_on && c->transport != NULL && c->transport != Py_None) return relay(c, c->transport, data);
    }
    if (!self->fast) return slow((PyObject *)self, data);
    PyObject *cobj = self->client;
    if (cobj == NULL || !PyObject_TypeCheck(cobj, &ClientBaseType) || !PyBytes_CheckExact(data)) {
        self->fast = 0;  /* cannot happen: a fast exchange always has its client */
        return slow((PyObject *)self, data);
    }
    ClientBase *c = (ClientBase *)cobj;
    Py_INCREF(cobj);  /* the handover below may drop self->client */
    PyObject *result = NULL, *out;
    Py_ssize_t crlf;
    int status;
    const char *buf = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    Body body = {self->rframe, self->rstate, self->rdigits, self->rleft};
    if (c->closing || c->cplan == NULL || c->transport == NULL || (PyObject *)self != c->fx_up || c->fx_left > 0)
        goto handover;
    if (self->rstatus == 0) {  /* the response's first bytes: its whole head, and what came of its body */
        if (!response_head(buf, n, &crlf, &status, &body) || !body_step(&body, buf + crlf + 2, n - crlf - 2))
            goto handover;
        Py_ssize_t extra_len = PyBytes_GET_SIZE(c->c_extra);
        if (extra_len) {
            out = PyBytes_FromStringAndSize(NULL, n + extra_len);
            if (out == NULL) goto done;
            char *o = PyBytes_AS_STRING(out);
            memcpy(o, buf, (size_t)crlf);
            memcpy(o + crlf, PyBytes_AS_STRING(c->c_extra), (size_t)extra_len);
            memcpy(o + crlf + extra_len, buf + crlf, (size_t)(n - crlf));
        } else {
            out = Py_NewRef(data);
        }
        self->rstatus = status;
    } else {  /* more of a body under way, relayed as it comes */
        if (!body_step(&body, buf, n)) goto handover;
        out = Py_NewRef(data);
    }
    self->rframe = body.frame, self->rstate = body.state, self->rdigits = body.digits, self->rleft = body.left;
    double now = loop_time(c->loop);
    if (now < 0 && PyErr_Occurred()) {
        Py_DECREF(out);
        goto done;
    }
    int logged = 0;
    if (body.state == B_END) {
        /* the exchange is over before the write: a write that fails closes the client, which finds it idle */
        logged = finish(self, c, now);
    } else {
        c->deadline = now + c->stream_idle_timeout;  /* as the Python path's `touch` */
    }
    PyObject *r = PyObject_CallMethodOneArg(c->transport, s_write, out);
    Py_DECREF(out);
    if (r == NULL) goto done;
    Py_DECREF(r);
    if (logged < 0) goto done;
    result = Py_NewRef(Py_None);
    goto done;
handover:
    result = upstream_slow((PyObject *)self, cobj, data);
done:
    Py_DECREF(cobj);
    return result;
}

/* Bytes that put a fresh llhttp response parser where this connection's parser would be if it had parsed the
 * lane's response so far: the same status, framing and place in the body (see `UpstreamConn.resume`). */
static PyObject *upstream_resume_prefix(UpstreamBase *self, PyObject *unused) {
    (void)unused;
    char out[128];
    int len, st = self->rstate;
    long long left = self->rleft;
    if (self->rstatus == 0 || st == B_END) {
        PyErr_SetString(PyExc_RuntimeError, "no response under way on the lane");
        return NULL;
    }
    if (self->rframe == F_LENGTH) {
        len = snprintf(out, sizeof(out), "HTTP/1.1 %d X\r\nContent-Length: %lld\r\n\r\n", self->rstatus, left);
        return PyBytes_FromStringAndSize(out, len);
    }
    len = snprintf(out, sizeof(out), "HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n", self->rstatus);
    const char *tails[] = {[B_DATA_CR] = "1\r\nx", [B_DATA_LF] = "1\r\nx\r", [B_LAST_CR] = "0\r\n",
                           [B_LAST_LF] = "0\r\n\r"};
    if (st == B_SIZE) len += snprintf(out + len, sizeof(out) - len, "%llx", left);
    else if (st == B_SIZE_LF) len += snprintf(out + len, sizeof(out) - len, "%llx\r", left);
    else if (st == B_DATA) len += snprintf(out + len, sizeof(out) - len, "%llx\r\n", left);
    else if (st != B_SIZE0) len += snprintf(out + len, sizeof(out) - len, "%s", tails[st]);
    return PyBytes_FromStringAndSize(out, len);
}

static int upstream_traverse(UpstreamBase *self, visitproc visit, void *arg) {
    Py_VISIT(self->client); Py_VISIT(self->transport); Py_VISIT(self->key);
    return 0;
}

static int upstream_clear(UpstreamBase *self) {
    Py_CLEAR(self->client); Py_CLEAR(self->transport); Py_CLEAR(self->key);
    return 0;
}

static void upstream_dealloc(UpstreamBase *self) {
    PyObject_GC_UnTrack(self);
    upstream_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef upstream_members[] = {
    {"client", T_OBJECT, offsetof(UpstreamBase, client), 0, NULL},
    {"transport", T_OBJECT, offsetof(UpstreamBase, transport), 0, NULL},
    {"key", T_OBJECT, offsetof(UpstreamBase, key), 0, NULL},
    {"idle_since", T_DOUBLE, offsetof(UpstreamBase, idle_since), 0, NULL},
    {"reusable", T_BOOL, offsetof(UpstreamBase, reusable), 0, NULL},
    {"fast", T_BOOL, offsetof(UpstreamBase, fast), 0, NULL},
    {"spliced", T_BOOL, offsetof(UpstreamBase, spliced), 0, NULL},
    {"rstatus", T_INT, offsetof(UpstreamBase, rstatus), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef upstream_methods[] = {
    {"data_received", (PyCFunction)upstream_data_received, METH_O,
     "Relay a fast-lane response, or hand the bytes to `_data_received`."},
    {"resume_prefix", (PyCFunction)upstream_resume_prefix, METH_NOARGS,
     "Bytes that put a fresh llhttp parser in the state of the response the lane is relaying."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject UpstreamBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._lane.UpstreamBase",
    .tp_basicsize = sizeof(UpstreamBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Upstream connection state the fast lane reads, and its data_received.",
    .tp_traverse = (traverseproc)upstream_traverse,
    .tp_clear = (inquiry)upstream_clear,
    .tp_dealloc = (destructor)upstream_dealloc,
    .tp_members = upstream_members,
    .tp_methods = upstream_methods,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------------------ */

static int copy_constant(PyObject *value, char *into, size_t size, Py_ssize_t *len) {
    char *p;
    Py_ssize_t n;
    if (PyUnicode_Check(value)) {
        p = (char *)PyUnicode_AsUTF8AndSize(value, &n);
        if (p == NULL) return -1;
    } else if (PyBytes_AsStringAndSize(value, &p, &n) < 0) {
        return -1;
    }
    if ((size_t)n >= size) {
        PyErr_SetString(PyExc_ValueError, "constant too long for the fast lane");
        return -1;
    }
    memcpy(into, p, (size_t)n);
    *len = n;
    return 0;
}

static PyObject *configure(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *path, *tail;
    long long limit;
    if (!PyArg_ParseTuple(args, "UO!L", &path, &PyBytes_Type, &tail, &limit)) return NULL;
    retry_limit = limit;
    if (copy_constant(path, status_path, sizeof(status_path), &status_path_len) < 0 ||
        copy_constant(tail, keep_alive, sizeof(keep_alive), &keep_alive_len) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *request_rules(PyObject *mod, PyObject *unused) {
    (void)mod, (void)unused;
    static const char *names[] = {"host", "drop", "keep-alive only", "other path", "length"};
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    for (const NameRule *r = REQUEST_RULES; r->name; r++) {
        PyObject *v = PyUnicode_FromString(names[r->rule]);
        if (v == NULL || PyDict_SetItemString(d, r->name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef module_methods[] = {
    {"request_rules", request_rules, METH_NOARGS, "{header name: what the lane does with it} (for the tests)."},
    {"configure", configure, METH_VARARGS,
     "configure(status_path, keep_alive, retry_limit): the proxy's own path (its requests never take the lane), "
     "the end of every request head sent upstream, and the largest request kept to resend."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef lane_module = {
    PyModuleDef_HEAD_INIT, "proxy._lane", "The proxy's fast lane (see proxy/_lane.c).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__lane(void) {
    init_tables();
    init_rules();
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_write, "write"); INTERN(s_time, "time"); INTERN(s_is_closing, "is_closing");
    INTERN(s_table, "table"); INTERN(s_buckets, "buckets"); INTERN(s_active, "_active");
    INTERN(s_note_activity, "note_activity"); INTERN(s_data_received_slow, "_data_received");
    INTERN(s_adopt, "_adopt"); INTERN(s_access_log, "access_log"); INTERN(s_buf, "buf");
    INTERN(s_stamp, "stamp"); INTERN(s_flush_bytes, "flush_bytes"); INTERN(s_flush, "flush"); INTERN(s_host, "host");
    INTERN(s_upstream, "upstream"); INTERN(s_added, "added"); INTERN(s_extra, "extra");
    INTERN(s_until, "until"); INTERN(s_route, "route"); INTERN(s_space_id, "space_id");
#undef INTERN
    if (PyType_Ready(&ClientBaseType) < 0 || PyType_Ready(&UpstreamBaseType) < 0) return NULL;
    PyObject *m = PyModule_Create(&lane_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "ClientBase", (PyObject *)&ClientBaseType) < 0 ||
        PyModule_AddObjectRef(m, "UpstreamBase", (PyObject *)&UpstreamBaseType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
