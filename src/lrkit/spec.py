"""Placeholder: replaced by the spec parser."""
def parse(spec, **fill):
    raise NotImplementedError
def from_dict(d):
    raise NotImplementedError
