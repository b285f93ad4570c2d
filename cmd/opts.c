/* opts.c - table-driven option parsing and help, in the manner of git's parse-options. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "opts.h"
#include "lib/base/llmq-int.h"

/* strtoll / strtod skip leading white space: "--ctx ' 16'" is a typo, not 16 */
int parse_int(const char *s, long long min, long long max, long long *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

void opts_help(const cmd_spec *spec, FILE *fp)
{
    fprintf(fp, "usage: llmq %s %s\n\n%s\n", spec->name, spec->synopsis, spec->summary);
    if (spec->details) fprintf(fp, "\n%s\n", spec->details);
    fprintf(fp, "\noptions:\n");
    for (const opt_def *o = spec->opts; o->type != OPT_END; o++) {
        char left[80], al[8] = "";
        if (o->alias) snprintf(al, sizeof al, "-%c, ", o->alias);
        if (o->type == OPT_FLAG) snprintf(left, sizeof left, "%s--%s", al, o->name);
        else if (o->type == OPT_CHOICE) snprintf(left, sizeof left, "%s--%s %s", al, o->name, o->choices);
        else snprintf(left, sizeof left, "%s--%s %s", al, o->name, o->arg ? o->arg : "X");
        char help[512];
        if (o->def) snprintf(help, sizeof help, "%s (default %s)", o->help, o->def);
        else snprintf(help, sizeof help, "%s", o->help);
        if (strlen(left) > 24) fprintf(fp, "  %s\n  %-24s  %s\n", left, "", help);
        else fprintf(fp, "  %-24s  %s\n", left, help);
    }
    fprintf(fp, "  %-24s  %s\n", "--help", "show this help and exit");
}

static int usage_error(const cmd_spec *spec, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "llmq %s: ", spec->name);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\ntry 'llmq %s --help'\n", spec->name);
    return 2;
}

/* Each row's def, read as its type reads a value from argv. */
static int set_defaults(const cmd_spec *spec)
{
    for (const opt_def *o = spec->opts; o->type != OPT_END; o++) {
        if (!o->def) continue;
        long long iv;
        double dv;
        int ok = 1;
        switch (o->type) {
        case OPT_INT:
        case OPT_INT64:
            if ((ok = !parse_int(o->def, (long long)o->min, (long long)o->max, &iv))) {
                if (o->type == OPT_INT) *(int *)o->dest = (int)iv;
                else *(long long *)o->dest = iv;
            }
            break;
        case OPT_DOUBLE:
            if ((ok = !parse_double(o->def, &dv) && dv >= o->min && dv <= o->max)) *(double *)o->dest = dv;
            break;
        case OPT_CHOICE:
            if ((ok = choice_ok(o->choices, o->def))) *(const char **)o->dest = o->def;
            break;
        case OPT_STRING:
        case OPT_PATH:
            *(const char **)o->dest = o->def;
            break;
        default:
            ok = 0;   /* a flag has no default but off */
            break;
        }
        if (!ok) {
            fprintf(stderr, "llmq %s: internal error: default '%s' of '--%s' is not a valid value\n",
                    spec->name, o->def, o->name);
            return 2;
        }
    }
    return 0;
}

int opts_parse(const cmd_spec *spec, int argc, char **argv, char **args, int *n_args)
{
    *n_args = 0;
    if (set_defaults(spec)) return 2;
    int only_args = 0;
    char q[LLMQ_QUOTE_SIZE];   /* argument text goes into messages escaped: one line, no control bytes */
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_args || a[0] != '-' || strcmp(a, "-") == 0) {
            if (!*a) return usage_error(spec, "an empty argument names no model or file%s%s", "", "");
            if (*n_args >= spec->max_args)
                return usage_error(spec, "unexpected argument '%s'%s", llmq_quote(q, a), "");
            args[(*n_args)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) { only_args = 1; continue; }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { opts_help(spec, stdout); return 1; }
        char name[64];
        const char *val = NULL;
        opt_def *o;
        if (a[1] != '-') {
            /* a one-letter alias such as -o, value in the next argument */
            for (o = spec->opts; o->type != OPT_END; o++)
                if (o->alias && a[1] == o->alias && a[2] == 0) break;
            if (o->type == OPT_END) return usage_error(spec, "unknown option '%s'%s", llmq_quote(q, a), "");
            snprintf(name, sizeof name, "%s", o->name);
        } else {
            const char *eq = strchr(a + 2, '=');
            size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            if (nl >= sizeof name) return usage_error(spec, "unknown option '%s'%s", llmq_quote(q, a), "");
            memcpy(name, a + 2, nl);
            name[nl] = 0;
            if (eq) val = eq + 1;
            for (o = spec->opts; o->type != OPT_END; o++)
                if (strcmp(o->name, name) == 0) break;
        }
        if (o->type == OPT_END) return usage_error(spec, "unknown option '--%s'%s", llmq_quote(q, name), "");
        if (o->type == OPT_FLAG) {
            if (val) return usage_error(spec, "option '--%s' takes no value%s", name, "");
            *(int *)o->dest = 1;
        } else {
            if (!val) {
                if (i + 1 >= argc) return usage_error(spec, "option '--%s' needs a value%s", name, "");
                val = argv[++i];
            }
            long long iv;
            double dv;
            switch (o->type) {
            case OPT_INT:
            case OPT_INT64:
                if (parse_int(val, (long long)o->min, (long long)o->max, &iv)) {
                    char range[96];
                    snprintf(range, sizeof range, " (an integer from %.0f to %.0f)", o->min, o->max);
                    fprintf(stderr, "llmq %s: invalid value '%s' for '--%s'%s\ntry 'llmq %s --help'\n",
                            spec->name, llmq_quote(q, val), name, range, spec->name);
                    return 2;
                }
                if (o->type == OPT_INT) *(int *)o->dest = (int)iv;
                else *(long long *)o->dest = iv;
                break;
            case OPT_DOUBLE:
                if (parse_double(val, &dv) || dv < o->min || dv > o->max) {
                    fprintf(stderr, "llmq %s: invalid value '%s' for '--%s' (a number from %g to %g)\ntry 'llmq %s --help'\n",
                            spec->name, llmq_quote(q, val), name, o->min, o->max, spec->name);
                    return 2;
                }
                *(double *)o->dest = dv;
                break;
            case OPT_CHOICE:
                if (!choice_ok(o->choices, val)) {
                    fprintf(stderr, "llmq %s: invalid value '%s' for '--%s' (one of %s)\ntry 'llmq %s --help'\n",
                            spec->name, llmq_quote(q, val), name, o->choices, spec->name);
                    return 2;
                }
                *(const char **)o->dest = val;
                break;
            case OPT_PATH:
                if (!*val)
                    return usage_error(spec, "option '--%s' needs a %s name, not ''", name,
                                       o->arg && !strcmp(o->arg, "DIR") ? "directory" : "file");
                *(const char **)o->dest = val;
                break;
            default:
                *(const char **)o->dest = val;
                break;
            }
        }
        if (o->seen) *o->seen = 1;
    }
    if (*n_args < spec->min_args) {
        fprintf(stderr, "llmq %s: missing argument\nusage: llmq %s %s\n", spec->name, spec->name, spec->synopsis);
        return 2;
    }
    return 0;
}
