#!/usr/bin/env python3
"""Compare two HDF5 files object by object, attribute by attribute (numpy + h5py only).

    compare_h5.py A.h5 B.h5 [--ignore-attr NAME ...]

Checks every group, dataset and attribute: names, HDF5 type classes and sizes, string
character sets and padding, shapes, chunk shapes, filter pipelines, and values (NaN-aware,
exact). Prints one line per difference and exits 1 if there is any, else prints "identical".
Attributes named with --ignore-attr (root level) are only required to exist in both.
"""
import argparse
import sys

import h5py
import numpy as np


def type_info(tid):
    """A comparable description of an HDF5 datatype."""
    cls = tid.get_class()
    info = {"class": cls, "size": tid.get_size()}
    if cls == h5py.h5t.STRING:
        info["cset"] = tid.get_cset()
        info["vlen"] = tid.is_variable_str()
        if not info["vlen"]:
            info["pad"] = tid.get_strpad()
    elif cls == h5py.h5t.COMPOUND:
        info["members"] = [
            (tid.get_member_name(i), tid.get_member_offset(i), type_info(tid.get_member_type(i)))
            for i in range(tid.get_nmembers())
        ]
    elif cls == h5py.h5t.ENUM:
        info["members"] = [(tid.get_member_name(i), tid.get_member_value(i)) for i in range(tid.get_nmembers())]
    elif cls in (h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        info["order"] = tid.get_order()
        if cls == h5py.h5t.INTEGER:
            info["sign"] = tid.get_sign()
    return info


def same_values(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.names:
        return all(same_values(a[n], b[n]) for n in a.dtype.names)
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.kind == "O":
        return [x for x in a.ravel()] == [y for y in b.ravel()]
    return bool(np.array_equal(a, b))


def filters(ds):
    dcpl = ds.id.get_create_plist()
    out = []
    for i in range(dcpl.get_nfilters()):
        code, flags, values, name = dcpl.get_filter(i)
        out.append((code, tuple(values)))
    return out


def compare_attrs(path, a, b, ignore, diffs):
    names_a, names_b = set(a.attrs.keys()), set(b.attrs.keys())
    for n in sorted(names_a ^ names_b):
        diffs.append(f"{path}: attribute {n} only in {'A' if n in names_a else 'B'}")
    for n in sorted(names_a & names_b):
        if n in ignore:
            continue
        ta = type_info(a.attrs.get_id(n).get_type())
        tb = type_info(b.attrs.get_id(n).get_type())
        if ta != tb:
            diffs.append(f"{path}: attribute {n} type {ta} != {tb}")
            continue
        if not same_values(a.attrs[n], b.attrs[n]):
            diffs.append(f"{path}: attribute {n} value {a.attrs[n]!r} != {b.attrs[n]!r}")


def compare(a, b, ignore):
    diffs = []

    def walk(path, ga, gb):
        compare_attrs(path, ga, gb, ignore if path == "/" else (), diffs)
        ka, kb = set(ga.keys()), set(gb.keys())
        for k in sorted(ka ^ kb):
            diffs.append(f"{path}{k}: only in {'A' if k in ka else 'B'}")
        for k in sorted(ka & kb):
            oa, ob = ga[k], gb[k]
            p = f"{path}{k}"
            if isinstance(oa, h5py.Group) and isinstance(ob, h5py.Group):
                walk(p + "/", oa, ob)
                continue
            if isinstance(oa, h5py.Group) or isinstance(ob, h5py.Group):
                diffs.append(f"{p}: group in one file, dataset in the other")
                continue
            ta, tb = type_info(oa.id.get_type()), type_info(ob.id.get_type())
            if ta != tb:
                diffs.append(f"{p}: type {ta} != {tb}")
            if oa.shape != ob.shape:
                diffs.append(f"{p}: shape {oa.shape} != {ob.shape}")
            if oa.chunks != ob.chunks:
                diffs.append(f"{p}: chunks {oa.chunks} != {ob.chunks}")
            if filters(oa) != filters(ob):
                diffs.append(f"{p}: filters {filters(oa)} != {filters(ob)}")
            if oa.shape == ob.shape and ta == tb and not same_values(oa[()], ob[()]):
                diffs.append(f"{p}: values differ")
            compare_attrs(p, oa, ob, (), diffs)

    walk("/", a, b)
    return diffs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--ignore-attr", action="append", default=[])
    args = p.parse_args()
    with h5py.File(args.a, "r") as a, h5py.File(args.b, "r") as b:
        diffs = compare(a, b, set(args.ignore_attr))
    for d in diffs:
        print(d)
    if diffs:
        return 1
    print("identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
