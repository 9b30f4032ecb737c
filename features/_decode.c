/* One entity kind's stored values (the packed snapshot and the event state) decoded into feature values, known
 * flags, view ages and found flags, entity by entity: the online store's fast path for the few entities a request
 * reads. See features/fast_decode.py for why, and features/online_store.py (_Kind.decode_numpy) with
 * features/event_state.py (ReadPlan.run) for the numpy reference every line here follows.
 *
 * A plain C library called through ctypes (no Python API), built as an optional extension: without a C compiler
 * the package installs without it and the numpy decode serves. A value the reference would treat in a way that
 * depends on the platform or that raises (a NaN day record key, a ring header out of int64's range, an id width
 * that is not a number, a clock that is not finite) makes a call return 1: the caller then runs the reference.
 *
 * A call allocates nothing: its scratch is the plan's, which the caller owns. The caller loads the library with
 * ctypes.PyDLL, so a call holds the GIL and no two calls use the scratch at once.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TAG_BYTES 8
#define FIXED_AT 24 /* the event state's fixed slots: after the tag, the trim day and the id width */
#define RECORD 16   /* a day record: key, amount */
#define SERIES 256  /* a record's key: day * 256 + series */
#define DAY 86400.0
#define FALLBACK 1

typedef struct {
    int32_t n_features;
    int32_t n_views;
    /* the packed snapshot: tag | stamp f f ... | stamp f ... */
    const uint8_t *packed_tag;
    int32_t snap_views;
    const int32_t *stamp_slot;   /* per snapshot view: its stamp's slot */
    const double *snap_ttl;
    const int32_t *snap_view_at; /* per snapshot view: its index among all views */
    int32_t snap_features;
    const int32_t *value_slot;   /* per stored snapshot feature */
    const int32_t *feature_view; /* its view among the snapshot views */
    const double *snap_default;
    const int32_t *snap_at;      /* its position in the vector */
    int32_t derived;
    const int32_t *derived_at;
    const int32_t *derived_source;
    const double *derived_default;
    /* the event state (event_features 0: the kind has none) */
    int32_t event_features;
    const uint8_t *event_tag;
    int32_t ids_at;    /* bytes before the ids */
    int32_t id_slots;
    int32_t series;
    const int32_t *series_head;   /* per series: its ring header's fixed slot */
    const uint64_t *series_days;  /* the ring's days */
    int32_t rows;                 /* windowed totals: one per (series, window) */
    int32_t w_max;
    int32_t widest_feed;
    const int32_t *feed_row;      /* series x widest_feed: the rows a series feeds */
    const int64_t *feed_window;   /* and their windows (0: padding, reached by no day) */
    int32_t means;
    const int32_t *mean_rows;     /* the sum rows, then the count rows */
    const double *mean_missing;
    int32_t lasts;
    const int32_t *last_fixed;    /* per last: its stamp's slot, then (lasts later) its value's slot */
    const double *last_ttl;
    const double *last_missing;
    const uint8_t *is_days;
    const double *unknown_mark;
    int32_t event_views;
    int32_t widest_view;
    const int32_t *view_stamp;    /* event views x widest_view: the stamps whose greatest says its age */
    const int32_t *event_view_at; /* per event view: its index among all views */
    const int32_t *value_from;    /* per event feature: its column among totals, means, lasts */
    const int32_t *known_from;    /* its known column among the means', the lasts', one always known */
    const int32_t *event_at;      /* its position in the vector */
    const double *event_default;
    /* scratch: which snapshot views are past their TTL; the plane of days (1 spare + w_max x rows, zeros between
     * entities) with a mark per cell an entity's records wrote, and those cells; the event features' columns */
    uint8_t *unfresh;
    double *plane;
    uint8_t *mark;
    int64_t *cells;
    double *cols;   /* totals (rows), means, lasts */
    uint8_t *kcols; /* means' known, lasts' known, 1 */
} Plan;

static double nan_value(void) {
    /* The NaN numpy and Python write (math.nan): positive, quiet, no payload. */
    const uint64_t bits = 0x7ff8000000000000ull;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline double load(const uint8_t *at) {
    double d;
    memcpy(&d, at, sizeof d); /* values may sit at any byte: no alignment is assumed */
    return d;
}

/* numpy's maximum: a NaN argument wins, and of two equal numbers (0.0 and -0.0) the second. */
static inline double np_maximum(double a, double b) {
    if (isnan(a)) return a;
    if (isnan(b)) return b;
    return a > b ? a : b;
}

/* Whether numpy's float64 -> int64 cast of d is defined (not NaN, inside int64's range); *out its value. */
static inline int to_int64(double d, int64_t *out) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return 0;
    *out = (int64_t)d;
    return 1;
}

/* The cells an entity's records wrote, in order (a plane's cells come day by day, oldest first). An insertion sort:
 * the records are mostly stored in the order of their days, so it is about one pass over a few dozen cells. */
static void sort_cells(int64_t *cells, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        const int64_t cell = cells[i];
        int64_t j = i;
        for (; j > 0 && cells[j - 1] > cell; j--) cells[j] = cells[j - 1];
        cells[j] = cell;
    }
}

/* The totals of the cells written (zeroed again for the next entity). numpy adds each row's days oldest first onto
 * 0.0. A total that starts at 0.0 is never -0.0 (a sum is -0.0 only of two), and adding a zero to anything but -0.0
 * changes no bit, so the days no record wrote are left out: each row adds the cells written, in the order of their
 * days. Past a few dozen cells, the plane is walked in order instead of sorting them. */
static void totals(Plan *p, int64_t written) {
    const int rows = p->rows;
    for (int row = 0; row < rows; row++) p->cols[row] = 0.0;
    if (written <= 64) {
        sort_cells(p->cells, written);
        for (int64_t i = 0; i < written; i++) p->cols[(p->cells[i] - 1) % rows] += p->plane[p->cells[i]];
    } else {
        for (int64_t d = 0; d < p->w_max; d++) {
            const int64_t first = 1 + d * rows;
            for (int row = 0; row < rows; row++) {
                if (p->mark[first + row]) p->cols[row] += p->plane[first + row];
            }
        }
    }
}

static void clear(Plan *p, int64_t written) {
    for (int64_t i = 0; i < written; i++) {
        p->plane[p->cells[i]] = 0.0;
        p->mark[p->cells[i]] = 0;
    }
}

/* Which plane cells the records of one state write (EventLayout.unpack, then ReadPlan.run's scatter): *written of
 * them, listed in p->cells and marked. Returns FALLBACK, every cell cleared, where numpy would decide. */
static int scatter(Plan *p, const uint8_t *state, int64_t len, const uint8_t *fixed, int64_t today,
                   int64_t *written) {
    const int rows = p->rows, w_max = p->w_max;
    *written = 0;
    /* int() of the value's id width, then the whole records after the ids. */
    const double width = load(state + TAG_BYTES + 8);
    if (!isfinite(width)) return FALLBACK; /* int() raises */
    const double whole = trunc(width);
    int64_t start;
    if (p->id_slots == 0) {
        start = p->ids_at;
    } else if (whole >= 1099511627776.0) {
        start = len; /* past the end: no records */
    } else if (whole <= -1099511627776.0) {
        return FALLBACK;
    } else {
        start = (int64_t)p->ids_at + (int64_t)p->id_slots * (int64_t)whole;
        if (start < 0) return FALLBACK; /* a negative slice start counts from the end */
    }
    const int64_t n_records = start < len ? (len - start) / RECORD : 0;
    for (int64_t r = 0; r < n_records; r++) {
        const uint8_t *record = state + start + RECORD * r;
        int64_t key, head;
        if (!to_int64(load(record), &key)) goto declined;
        const int64_t series = key & (SERIES - 1), day = (key - series) / SERIES; /* divmod: floor */
        if (series >= p->series) goto declined;                                   /* an IndexError */
        if (!to_int64(load(fixed + 8 * (int64_t)p->series_head[series]), &head)) goto declined;
        /* Held by its ring (0 <= newest - day < W) and not after today, as unsigned comparisons of wrapped
         * int64 differences. */
        const uint64_t lag = (uint64_t)head - (uint64_t)day, back = (uint64_t)today - (uint64_t)day;
        if (!(lag < p->series_days[series] && back < (uint64_t)w_max)) continue;
        const double amount = load(record + 8);
        for (int f = 0; f < p->widest_feed; f++) {
            const int64_t at = (int64_t)series * p->widest_feed + f;
            if ((int64_t)back < p->feed_window[at]) {
                const int64_t cell = 1 + (int64_t)(w_max - 1 - (int64_t)back) * rows + p->feed_row[at];
                p->plane[cell] = amount; /* of one day written twice, the last one counts */
                if (!p->mark[cell]) {
                    p->mark[cell] = 1;
                    p->cells[(*written)++] = cell;
                }
            }
        }
    }
    return 0;
declined:
    clear(p, *written);
    return FALLBACK;
}

/* The event features of one entity (ReadPlan.run for one row), into the vector; *seen whether it has any state. */
static int events_row(Plan *p, const uint8_t *state, int64_t len, double now, int64_t today, double *values,
                      uint8_t *known, double *ages, int *seen) {
    const int present = state != NULL && len >= p->ids_at && memcmp(state, p->event_tag, TAG_BYTES) == 0;
    const double nan = nan_value();
    const uint8_t *fixed = present ? state + FIXED_AT : NULL;
#define FIXED(slot) (fixed ? load(fixed + 8 * (int64_t)(slot)) : 0.0) /* an absent state's slots are zeros */
    int64_t written = 0;
    if (present && scatter(p, state, len, fixed, today, &written)) return FALLBACK;
    totals(p, written);
    clear(p, written);
    const int rows = p->rows, m = p->means, k = p->lasts;
    for (int j = 0; j < m; j++) {
        const double sum = p->cols[p->mean_rows[j]], count = p->cols[p->mean_rows[m + j]];
        const int ok = count > 0;
        p->kcols[j] = (uint8_t)ok;
        p->cols[rows + j] = ok ? sum / np_maximum(count, 1.0) : p->mean_missing[j];
    }
    for (int j = 0; j < k; j++) {
        const double stamp = FIXED(p->last_fixed[j]) / 1000000.0;
        const double age = now - stamp;
        const double value = p->is_days[j] ? floor(age / DAY) : FIXED(p->last_fixed[k + j]);
        const int ok = stamp > 0 && age <= p->last_ttl[j] && value == value;
        p->kcols[m + j] = (uint8_t)ok;
        p->cols[rows + m + j] = ok ? (value == p->unknown_mark[j] ? nan : value) : p->last_missing[j];
    }
    p->kcols[m + k] = 1;
    for (int i = 0; i < p->event_features; i++) {
        values[p->event_at[i]] = p->cols[p->value_from[i]];
        known[p->event_at[i]] = p->kcols[p->known_from[i]];
    }
    *seen = 0;
    for (int v = 0; v < p->event_views; v++) {
        const int32_t *stamps = p->view_stamp + (int64_t)v * p->widest_view;
        double newest = FIXED(stamps[0]);
        for (int j = 1; j < p->widest_view; j++) newest = np_maximum(newest, FIXED(stamps[j]));
        const int ever = newest > 0;
        ages[p->event_view_at[v]] = ever ? np_maximum(now - newest / 1000000.0, 0.0) : nan;
        *seen |= ever;
    }
#undef FIXED
    return 0;
}

/* One entity (_Kind.decode_numpy for one row). packed: the packed value, exactly as long as the layout's
 * (PackedLayout.unpack's absent value where it was not). mode 0: no event state (the kind has none), 1: the
 * state's first bytes, read for whether there is any, 2: the whole state. */
static int decode_row(Plan *p, const uint8_t *packed, const uint8_t *state, int64_t len, int mode, double now,
                      int64_t today, double *values, uint8_t *known, double *ages, uint8_t *found) {
    const double nan = nan_value();
    const int present = memcmp(packed, p->packed_tag, TAG_BYTES) == 0;
    const uint8_t *slots = packed + TAG_BYTES;
    for (int v = 0; v < p->n_views; v++) ages[v] = nan;
    int written = 0;
    for (int v = 0; v < p->snap_views; v++) {
        const double stamp = present ? load(slots + 8 * (int64_t)p->stamp_slot[v]) : nan;
        const double age = stamp > 0 ? np_maximum(now - stamp, 0.0) : nan;
        written |= stamp > 0;
        p->unfresh[v] = !(age <= p->snap_ttl[v]);
        ages[p->snap_view_at[v]] = age;
    }
    for (int f = 0; f < p->snap_features; f++) {
        const double raw = present ? load(slots + 8 * (int64_t)p->value_slot[f]) : nan;
        const int missing = isnan(raw) || p->unfresh[p->feature_view[f]];
        values[p->snap_at[f]] = missing ? p->snap_default[f] : raw;
        known[p->snap_at[f]] = (uint8_t)!missing;
    }
    for (int d = 0; d < p->derived; d++) {
        /* Derivation days_until: the source (a stored date as a day number) less the day of the read. */
        const int ok = known[p->derived_source[d]];
        values[p->derived_at[d]] = ok ? values[p->derived_source[d]] - (double)today : p->derived_default[d];
        known[p->derived_at[d]] = (uint8_t)ok;
    }
    int has = present && written;
    if (mode == 2) {
        int seen;
        if (events_row(p, state, len, now, today, values, known, ages, &seen)) return FALLBACK;
        has |= seen;
    } else if (mode == 1) {
        for (int i = 0; i < p->event_features; i++) {
            values[p->event_at[i]] = p->event_default[i];
            known[p->event_at[i]] = 0;
        }
        has |= state != NULL && len >= TAG_BYTES && memcmp(state, p->event_tag, TAG_BYTES) == 0;
    }
    if (!has) memset(known, 0, (size_t)p->n_features); /* a cold start: no value is the store's */
    *found = (uint8_t)has;
    return 0;
}

/* n entities: packed n values of the layout's size back to back; states their event states back to back, each
 * state_len[i] bytes (0: none). out: n x n_features values (float64), n x n_views ages (float64), n x n_features
 * known, n found (bytes). Returns 0, or 1 when the numpy reference must decide. */
int decode_many(Plan *p, int64_t n, const uint8_t *packed, int64_t packed_size, const uint8_t *states,
                const int64_t *state_len, int mode, double now, uint8_t *out) {
    /* Beyond ~31 million years the reference's integer day arithmetic may overflow or raise: it decides. */
    if (!isfinite(now) || fabs(now) >= 1e15) return FALLBACK;
    const int64_t today = (int64_t)floor(now / DAY);
    double *values = (double *)out, *ages = values + n * p->n_features;
    uint8_t *known = (uint8_t *)(ages + n * p->n_views), *found = known + n * p->n_features;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t len = mode ? state_len[i] : 0;
        if (decode_row(p, packed + i * packed_size, len ? states + at : NULL, len, mode, now, today,
                       values + i * p->n_features, known + i * p->n_features, ages + i * p->n_views, found + i))
            return FALLBACK;
        at += len;
    }
    return 0;
}

/* One entity: decode_many without joining anything (a recommend's customer). state may be NULL. */
int decode_one(Plan *p, const uint8_t *packed, const uint8_t *state, int64_t state_len, int mode, double now,
               uint8_t *out) {
    return decode_many(p, 1, packed, 0, state, &state_len, mode, now, out);
}
