/* LightGBM trees evaluated from flat tables: raw scores and exact path-dependent TreeSHAP contributions for a few
 * rows at a time (a request's). See training/fast_trees.py for the layout, why and how it is checked.
 *
 * A plain C library called through ctypes (no Python API), built as an optional extension: without a C compiler
 * the package installs without it and ModelBundle scores with LightGBM's own predict.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    int32_t n_features;
    int32_t n_trees;
    const int32_t *tree_root;      /* >= 0: internal node; < 0: ~leaf (a one-leaf tree) */
    const int32_t *node_feature;
    const uint8_t *node_categorical;
    const double *node_threshold;
    const uint8_t *node_missing;   /* 0 None, 1 Zero, 2 NaN */
    const uint8_t *node_default_left;
    const int32_t *node_left;      /* >= 0: internal node; < 0: ~leaf */
    const int32_t *node_right;
    const int32_t *node_cat_start; /* words of cat_bits holding the node's left categories */
    const int32_t *node_cat_words;
    const uint32_t *cat_bits;
    int32_t n_nodes;
    int32_t n_leaves;
    const double *leaf_value;
    const int32_t *leaf_slot_start;  /* n_leaves + 1: each leaf's distinct path features ("slots") */
    const int64_t *leaf_g_start;     /* each leaf's 2^d table of G, see fast_trees.py */
    const int32_t *slot_feature;
    const double *slot_zero;         /* share of the training rows that reach the leaf through this feature's splits */
    const int32_t *slot_entry_start; /* n_slots + 1: the path's splits on this slot's feature */
    const int32_t *entry_node;
    const uint8_t *entry_left;
    const double *g;
    double bias;                     /* sum over trees of the expected value */
    const int32_t *tree_node_start;    /* n_trees + 1: each tree's internal nodes are contiguous */
    const int32_t *tree_feature_start; /* n_trees + 1: the features each tree splits on (tree_features) */
    const int32_t *tree_features;
    const int32_t *tree_leaf_start;    /* n_trees + 1: each tree's leaves are contiguous */
    const int64_t *tree_table_start;   /* n_trees + 1: each tree's table of terms by way taken; empty: none */
    const double *table;
} Trees;

/* LightGBM's Tree::NumericalDecision / CategoricalDecision (include/LightGBM/tree.h): 1 when x goes left. */
static inline int goes_left(const Trees *t, int n, double x) {
    if (t->node_categorical[n]) {
        if (isnan(x) || x >= 2147483647.0 || x <= -2147483648.0) return 0;
        int v = (int)x;
        if (v < 0) return 0;
        int word = v >> 5;
        if (word >= t->node_cat_words[n]) return 0;
        return (t->cat_bits[t->node_cat_start[n] + word] >> (v & 31)) & 1u;
    }
    uint8_t missing = t->node_missing[n];
    if (isnan(x) && missing != 2) x = 0.0;
    const double zero = (double)1e-35f; /* kZeroThreshold */
    if ((missing == 1 && x >= -zero && x <= zero) || (missing == 2 && isnan(x))) return t->node_default_left[n];
    return x <= t->node_threshold[n];
}

/* The leaf's value that row reaches from node n. */
static inline double leaf_from(const Trees *t, int n, const double *row) {
    while (n >= 0) n = goes_left(t, n, row[t->node_feature[n]]) ? t->node_left[n] : t->node_right[n];
    return t->leaf_value[~n];
}

/* The plain walk: each row down each tree, its leaf values summed in tree order. */
static void raw_rows(const Trees *t, const double *x, int rows, double *out, double sigmoid) {
    for (int r = 0; r < rows; r++) {
        const double *row = x + (int64_t)r * t->n_features;
        double sum = 0.0;
        for (int k = 0; k < t->n_trees; k++) sum += leaf_from(t, t->tree_root[k], row);
        out[r] = sigmoid > 0.0 ? 1.0 / (1.0 + exp(-sigmoid * sum)) : sum;
    }
}

#define STACK_FEATURES 4096 /* columns at most for the shared walk (its flags live on the stack); wider: the plain walk */

/* varies[f] = 1 when column f's bits differ between some row and the first: equal bits decide every split alike. */
static void varying_columns(const double *x, int rows, int nf, uint8_t *varies) {
    memset(varies, 0, (size_t)nf);
    for (int r = 1; r < rows; r++) {
        const double *row = x + (int64_t)r * nf;
        for (int f = 0; f < nf; f++) varies[f] |= memcmp(row + f, x + f, sizeof(double)) != 0;
    }
}

/* Raw scores (the sum of the trees' leaf values), one per row of x (rows x n_features, row-major); with sigmoid > 0,
 * the binary objective's probability as LightGBM converts it (BinaryLogloss::ConvertOutput, libm's exp), so the
 * numbers are LightGBM's to the last bit.
 *
 * The rows of one call are nearly the same (one customer's rows for several actions, one contact's for several
 * agents), so the trees go outer: the first row walks a tree until a node tests a column whose bits differ between
 * rows; every row shares the way down to there (the same values decide it), so a tree whose whole path tests only
 * shared columns gives every row its leaf, and otherwise each row walks on from that node alone. Each row still
 * gets its own leaf in each tree, summed in tree order from 0.0: the plain walk's numbers, bit for bit. */
void trees_raw(const Trees *t, const double *x, int rows, double *out, double sigmoid) {
    const int nf = t->n_features;
    if (rows <= 1 || nf > STACK_FEATURES) {
        raw_rows(t, x, rows, out, sigmoid);
        return;
    }
    uint8_t varies[STACK_FEATURES];
    varying_columns(x, rows, nf, varies);
    for (int r = 0; r < rows; r++) out[r] = 0.0;
    for (int k = 0; k < t->n_trees; k++) {
        int n = t->tree_root[k];
        while (n >= 0 && !varies[t->node_feature[n]])
            n = goes_left(t, n, x[t->node_feature[n]]) ? t->node_left[n] : t->node_right[n];
        if (n < 0) {
            const double v = t->leaf_value[~n];
            for (int r = 0; r < rows; r++) out[r] += v;
            continue;
        }
        for (int r = 0; r < rows; r++) out[r] += leaf_from(t, n, x + (int64_t)r * nf);
    }
    if (sigmoid > 0.0)
        for (int r = 0; r < rows; r++) out[r] = 1.0 / (1.0 + exp(-sigmoid * out[r]));
}

/* Leaf l's terms added to phi, given which of its path features the row follows (bit s - s0 of p) and Z_B, the
 * product of z over those it does not follow: the part the two ways of finding p share. */
static inline void add_terms(const Trees *t, int l, uint32_t p, double zb, double *phi) {
    const int s0 = t->leaf_slot_start[l], s1 = t->leaf_slot_start[l + 1];
    const double *g = t->g + t->leaf_g_start[l];
    const double vzb = t->leaf_value[l] * zb;
    const double cold = -vzb * g[p];
    for (int s = s0; s < s1; s++) {
        const uint32_t bit = 1u << (s - s0);
        const double term[2] = {cold, vzb * (1.0 - t->slot_zero[s]) * g[p ^ bit]};
        phi[t->slot_feature[s]] += term[(p & bit) != 0];
    }
}

/* The TreeSHAP terms of leaves [l0, l1) for one row, added to phi. A leaf's term depends on the row only through
 * which of its path features the row follows (mask p): feature i followed adds v * Z_B * (1 - z_i) * G(p without i),
 * one not followed adds -v * Z_B * G(p), with Z_B the product of z over the features not followed. */
static void leaves(const Trees *t, int l0, int l1, const uint8_t *dec, double *phi) {
    for (int l = l0; l < l1; l++) {
        const int s0 = t->leaf_slot_start[l], s1 = t->leaf_slot_start[l + 1];
        if (s0 == s1) continue;
        /* Branch-free: which way a row goes is data, and mispredicted branches cost more than the arithmetic. */
        uint32_t p = 0;
        double zb = 1.0;
        for (int s = s0; s < s1; s++) {
            unsigned followed = 1;
            for (int e = t->slot_entry_start[s]; e < t->slot_entry_start[s + 1]; e++)
                followed &= dec[t->entry_node[e]] == t->entry_left[e];
            const double factor[2] = {t->slot_zero[s], 1.0};
            p |= followed << (s - s0);
            zb *= factor[followed];
        }
        add_terms(t, l, p, zb, phi);
    }
}

/* The same terms for one tree, by a walk down it that counts, per feature, the splits on the way that the row does
 * not follow (mismatch, zero between calls): at a leaf a path feature is followed when its count is 0. */
static void visit(const Trees *t, int n, const uint8_t *dec, int32_t *mismatch, double *phi) {
    if (n < 0) {
        const int l = ~n, s0 = t->leaf_slot_start[l], s1 = t->leaf_slot_start[l + 1];
        uint32_t p = 0;
        double zb = 1.0;
        for (int s = s0; s < s1; s++) {
            const unsigned followed = mismatch[t->slot_feature[s]] == 0;
            const double factor[2] = {t->slot_zero[s], 1.0};
            p |= followed << (s - s0);
            zb *= factor[followed];
        }
        add_terms(t, l, p, zb, phi);
        return;
    }
    const int f = t->node_feature[n], left = dec[n];
    mismatch[f] += !left;
    visit(t, t->node_left[n], dec, mismatch, phi);
    mismatch[f] += left - !left;
    visit(t, t->node_right[n], dec, mismatch, phi);
    mismatch[f] -= left;
}

/* Tree k's terms for a row, read from the tree's table and added to phi, when it has one (returns 0 when not). A
 * tree's terms depend on the row only through the way it goes at each of the tree's splits, so a tree with few
 * splits has them tabled at load for every way (trees_fill_tables): the row's ways, as bits, index the table. */
static inline int tabled_terms(const Trees *t, int k, const uint8_t *dec, double *phi) {
    const int64_t at = t->tree_table_start[k];
    if (at == t->tree_table_start[k + 1]) return 0;
    const int n0 = t->tree_node_start[k], n1 = t->tree_node_start[k + 1];
    const int f0 = t->tree_feature_start[k], f1 = t->tree_feature_start[k + 1];
    uint32_t way = 0;
    for (int n = n0; n < n1; n++) way |= (uint32_t)dec[n] << (n - n0);
    const double *row = t->table + at + (int64_t)way * (f1 - f0);
    for (int i = f0; i < f1; i++) phi[t->tree_features[i]] += row[i - f0];
    return 1;
}

/* Path-dependent TreeSHAP, as LightGBM's pred_contrib: out is rows x (n_features + 1), the last column the bias.
 * Scratch: decided rows x n_nodes bytes, terms rows x (n_features + 1) doubles, mismatch n_features ints (zeros).
 * A split on a column whose bits every row shares is decided once, for the first row.
 * A tree with a table gives each row its terms from there (tabled_terms). Otherwise one row goes leaf by leaf
 * (fastest alone), and several go tree by tree: a row whose decisions in a tree equal an
 * earlier row's (one customer's rows for several actions differ in the action alone and often take the same way
 * through a tree: 41% of them on the demo's propensity model) takes that row's terms for the tree, the same
 * numbers computed once; the others walk the tree (faster than leaf by leaf there, by measurement). */
void trees_contributions(const Trees *t, const double *x, int rows, double *out, uint8_t *decided, double *terms,
                         int32_t *mismatch) {
    const int nf = t->n_features, width = nf + 1;
    uint8_t varies[STACK_FEATURES];
    const int share = rows > 1 && nf <= STACK_FEATURES;
    if (share) varying_columns(x, rows, nf, varies);
    for (int r = 0; r < rows; r++) {
        const double *row = x + (int64_t)r * nf;
        uint8_t *dec = decided + (int64_t)r * t->n_nodes;
        double *phi = out + (int64_t)r * width;
        for (int i = 0; i < width; i++) phi[i] = 0.0;
        if (r > 0 && share) { /* a split on a column every row shares decides as for the first row */
            for (int n = 0; n < t->n_nodes; n++)
                dec[n] = varies[t->node_feature[n]] ? (uint8_t)goes_left(t, n, row[t->node_feature[n]]) : decided[n];
        } else {
            for (int n = 0; n < t->n_nodes; n++) dec[n] = (uint8_t)goes_left(t, n, row[t->node_feature[n]]);
        }
    }
    if (rows == 1) {
        for (int k = 0; k < t->n_trees; k++) {
            if (!tabled_terms(t, k, decided, out)) leaves(t, t->tree_leaf_start[k], t->tree_leaf_start[k + 1], decided, out);
        }
    } else {
        for (int k = 0; k < t->n_trees; k++) {
            const int n0 = t->tree_node_start[k], n1 = t->tree_node_start[k + 1];
            const int f0 = t->tree_feature_start[k], f1 = t->tree_feature_start[k + 1];
            for (int r = 0; r < rows; r++) {
                const uint8_t *dec = decided + (int64_t)r * t->n_nodes;
                double *term = terms + (int64_t)r * width, *phi = out + (int64_t)r * width;
                if (tabled_terms(t, k, dec, phi)) continue;
                int same = -1;
                for (int q = r - 1; q >= 0 && q >= r - 8; q--) {
                    if (memcmp(decided + (int64_t)q * t->n_nodes + n0, dec + n0, (size_t)(n1 - n0)) == 0) {
                        same = q;
                        break;
                    }
                }
                if (same >= 0) {
                    const double *earlier = terms + (int64_t)same * width;
                    for (int i = f0; i < f1; i++) term[t->tree_features[i]] = earlier[t->tree_features[i]];
                } else {
                    for (int i = f0; i < f1; i++) term[t->tree_features[i]] = 0.0;
                    if (n0 < n1) visit(t, t->tree_root[k], dec, mismatch, term);
                }
                for (int i = f0; i < f1; i++) phi[t->tree_features[i]] += term[t->tree_features[i]];
            }
        }
    }
    for (int r = 0; r < rows; r++) out[(int64_t)r * width + t->n_features] += t->bias;
}

/* Fill each leaf's G table: G(S) = sum over m of w(|S| - m, d) e_m(z over S), for every subset S of the leaf's d
 * slots, w(k, d) = k! (d - 1 - k)! / d!, e_m the elementary symmetric polynomial. scratch: 2^dmax * (dmax + 1)
 * doubles, weights: dmax doubles. */
void trees_fill_g(Trees *t, double *g, double *scratch, double *weights) {
    for (int l = 0; l < t->n_leaves; l++) {
        const int s0 = t->leaf_slot_start[l], d = t->leaf_slot_start[l + 1] - s0;
        if (d == 0) continue;
        for (int k = 0; k < d; k++) {
            double w = 1.0 / d; /* k! (d-1-k)! / d! = 1 / (d * C(d-1, k)) */
            for (int j = 1; j <= k; j++) w *= (double)j / (double)(d - k - 1 + j);
            weights[k] = w;
        }
        const int width = d + 1;
        for (int m = 0; m < width; m++) scratch[m] = 0.0;
        scratch[0] = 1.0;
        for (uint32_t mask = 1; mask < (1u << d); mask++) {
            int low = __builtin_ctz(mask);
            const double z = t->slot_zero[s0 + low];
            const double *prev = scratch + (int64_t)(mask & (mask - 1)) * width;
            double *cur = scratch + (int64_t)mask * width;
            cur[0] = prev[0];
            for (int m = 1; m < width; m++) cur[m] = prev[m] + z * prev[m - 1];
        }
        double *out = g + t->leaf_g_start[l];
        for (uint32_t mask = 0; mask < (1u << d); mask++) {
            const int size = __builtin_popcount(mask);
            const double *e = scratch + (int64_t)mask * width;
            double sum = 0.0;
            for (int m = 0; m <= size; m++) {
                int k = size - m;
                if (k < d) sum += weights[k] * e[m];
            }
            out[mask] = sum;
        }
    }
}

/* Fill the tables of the trees that have one (tree_table_start): for every way through the tree's splits (bit n - n0
 * set: the row goes left at node n), the tree's terms as visit computes them, in tree_features order. Needs the G
 * tables filled first. Scratch: dec n_nodes bytes, mismatch n_features ints (zeros), term n_features doubles. */
void trees_fill_tables(Trees *t, double *table, uint8_t *dec, int32_t *mismatch, double *term) {
    for (int k = 0; k < t->n_trees; k++) {
        const int64_t at = t->tree_table_start[k];
        if (at == t->tree_table_start[k + 1]) continue;
        const int n0 = t->tree_node_start[k], n1 = t->tree_node_start[k + 1];
        const int f0 = t->tree_feature_start[k], f1 = t->tree_feature_start[k + 1];
        for (uint32_t way = 0; way < (1u << (n1 - n0)); way++) {
            for (int n = n0; n < n1; n++) dec[n] = (way >> (n - n0)) & 1u;
            for (int i = f0; i < f1; i++) term[t->tree_features[i]] = 0.0;
            visit(t, t->tree_root[k], dec, mismatch, term);
            double *row = table + at + (int64_t)way * (f1 - f0);
            for (int i = f0; i < f1; i++) row[i - f0] = term[t->tree_features[i]];
        }
    }
}
