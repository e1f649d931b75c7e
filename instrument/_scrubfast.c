/* instrument._scrubfast: whether a finished span needs no scrubbing, answered in C.
 *
 * Why native: the scrubber (instrument._records.Scrubber.span) runs for every exported span on
 * the export thread, which holds the GIL against the service's own threads while it does. In the
 * common case nothing in the span needs hiding, and the Python check that says so cost ~2 us a
 * span (about a tenth of a whole request span) in attribute look-ups and set building. This asks
 * the same questions of the same objects in ~0.4 us.
 *
 * It only ever answers "clean" (1) or "ask Python" (0): any shape it does not know (an attribute
 * missing, another type, a string it has not seen judged clean, an event, a status message) is
 * 0, and the Python scrubber decides, and learns, as it did before. The property tests hold it to
 * the Python path: whatever this calls clean, the Python scrubber returns unchanged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *S_name, *S_status, *S_description, *S_attributes, *S_dict, *S_resource,
    *S_events, *S_dq;

/* 1: every key is known plain and every value a number, a bool or a string known clean */
static int clean_attributes(PyObject *attrs, PyObject *plain_keys, PyObject *clean_strings) {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        int known = PySet_Contains(plain_keys, key);
        if (known != 1) return known; /* 0: not known plain; -1: error */
        if (PyLong_CheckExact(value) || PyFloat_CheckExact(value) || PyBool_Check(value)) continue;
        if (!PyUnicode_CheckExact(value)) return 0;
        int seen = PySet_Contains(clean_strings, value);
        if (seen != 1) return seen;
    }
    return 1;
}

/* 1 when the span needs no scrubbing; 0 when Python must look; -1 on an error (set) */
static int span_clean(PyObject *span, PyObject *plain_keys, PyObject *clean_strings,
                      PyObject *seen_names, PyObject *resource) {
    int result = 0;
    PyObject *name = NULL, *status = NULL, *description = NULL, *held = NULL, *attrs = NULL,
             *res = NULL, *events = NULL, *dq = NULL;
    if (resource == Py_None) goto done;
    /* the resource: the provider's, already judged clean (the caller passes it only then) */
    if (!(res = PyObject_GetAttr(span, S_resource))) goto fail;
    if (res != resource) goto done;
    /* the name: one the redactor judged clean before (its cache maps it to itself) */
    if (!(name = PyObject_GetAttr(span, S_name))) goto fail;
    if (!PyUnicode_CheckExact(name)) goto done;
    PyObject *judged = PyDict_GetItemWithError(seen_names, name); /* borrowed */
    if (judged == NULL) {
        if (PyErr_Occurred()) goto fail;
        goto done;
    }
    if (judged != name) {
        int same = PyObject_RichCompareBool(judged, name, Py_EQ);
        if (same != 1) {
            result = same;
            goto out;
        }
    }
    /* the status: no message (a message is redacted in Python) */
    if (!(status = PyObject_GetAttr(span, S_status))) goto fail;
    if (status != Py_None) {
        if (!(description = PyObject_GetAttr(status, S_description))) goto fail;
        if (description != Py_None) {
            int truth = PyObject_IsTrue(description);
            if (truth != 0) {
                result = truth < 0 ? -1 : 0;
                goto out;
            }
        }
    }
    /* no events, read off the SDK's deque (an event's attributes are scrubbed in Python) */
    if (!(events = PyObject_GetAttr(span, S_events))) goto fail;
    if (events != Py_None) {
        if (!(dq = PyObject_GetAttr(events, S_dq))) goto fail;
        Py_ssize_t n = PyObject_Length(dq);
        if (n < 0) goto fail;
        if (n > 0) goto done;
    }
    /* the attributes: the SDK's plain dict behind its BoundedAttributes */
    if (!(held = PyObject_GetAttr(span, S_attributes))) goto fail;
    if (held == Py_None) {
        result = 1;
        goto out;
    }
    if (PyDict_CheckExact(held)) {
        attrs = held;
        Py_INCREF(attrs);
    } else if (!(attrs = PyObject_GetAttr(held, S_dict))) {
        goto fail;
    }
    if (!PyDict_CheckExact(attrs)) goto done;
    result = clean_attributes(attrs, plain_keys, clean_strings);
    goto out;
fail:
    /* a shape this does not know (an attribute missing): Python decides */
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        result = 0;
    } else {
        result = -1;
    }
    goto out;
done:
    result = 0;
out:
    Py_XDECREF(name);
    Py_XDECREF(status);
    Py_XDECREF(description);
    Py_XDECREF(held);
    Py_XDECREF(attrs);
    Py_XDECREF(res);
    Py_XDECREF(events);
    Py_XDECREF(dq);
    return result;
}

static PyObject *clean(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "clean(span, plain_keys, clean_strings, seen_names, resource)");
        return NULL;
    }
    if (!PySet_Check(args[1]) || !PySet_Check(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "plain_keys and clean_strings are sets, seen a dict");
        return NULL;
    }
    int result = span_clean(args[0], args[1], args[2], args[3], args[4]);
    if (result < 0) return NULL;
    return PyBool_FromLong(result);
}

static PyMethodDef methods[] = {
    {"clean", (PyCFunction)(void (*)(void))clean, METH_FASTCALL,
     "clean(span, plain_keys, clean_strings, seen_names, resource) -> bool: True when the span "
     "needs no scrubbing (False: ask the Python scrubber)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "instrument._scrubfast", "Whether a finished span needs no scrubbing.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scrubfast(void) {
    if (!(S_name = PyUnicode_InternFromString("_name")) ||
        !(S_status = PyUnicode_InternFromString("_status")) ||
        !(S_description = PyUnicode_InternFromString("description")) ||
        !(S_attributes = PyUnicode_InternFromString("_attributes")) ||
        !(S_dict = PyUnicode_InternFromString("_dict")) ||
        !(S_resource = PyUnicode_InternFromString("_resource")) ||
        !(S_events = PyUnicode_InternFromString("_events")) ||
        !(S_dq = PyUnicode_InternFromString("_dq")))
        return NULL;
    return PyModule_Create(&module);
}
