"""`model.summary()`: Keras' table of layers, output shapes and parameter counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .network import Network


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"


def _shape(shape: Any) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in (None, *shape)) + ")"


def summary_lines(model: "Network", line_length: int | None = None) -> list[str]:
    rows: list[tuple[str, ...]] = []
    branched = bool(model.nodes) and any(len(node.input_tensors) > 1 for node in model.nodes)
    header = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if branched else ())
    if model.nodes:
        outputs = model._outputs_by_node()
        if branched:
            rows.append((f"{getattr(model.input, 'name', 'input_layer')} (InputLayer)", _shape(model.input._shape),
                         "0", "-"))
        names = {id(model.input): getattr(model.input, "name", "input_layer")}
        for node in model.nodes:
            layer = node.layer
            out = outputs[id(node)]
            names[id(out)] = layer.name
            row = (f"{layer.name} ({type(layer).__name__})", _shape(out._shape), f"{_params(layer):,}")
            if branched:
                row += (", ".join(names.get(id(t), "?") for t in node.input_tensors),)
            rows.append(row)
    else:
        for layer in model.layers:
            rows.append((f"{getattr(layer, 'name', '?')} ({type(layer).__name__})",
                         _shape(getattr(layer, "output_shape_", None)) if getattr(layer, "output_shape_", None)
                         else "?", f"{_params(layer):,}"))
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) + 2 if rows else len(header[i]) + 2
              for i in range(len(header))]
    if line_length:
        widths[0] = max(widths[0], line_length - sum(widths[1:]) - len(widths) - 1)

    def line(cells: tuple[str, ...], left: str, mid: str, right: str) -> str:
        parts = [f" {c:<{w - 2}} " if i != 2 else f" {c:>{w - 2}} " for i, (c, w) in enumerate(zip(cells, widths))]
        return left + mid.join(parts) + right

    def rule(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * w for w in widths) + right

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    lines = [f'Model: "{model.name}"', rule("┏", "┳", "┓", "━"), line(header, "┃", "┃", "┃"), rule("┡", "╇", "┩", "━")]
    for i, row in enumerate(rows):
        lines.append(line(row, "│", "│", "│"))
        if branched and i < len(rows) - 1:
            lines.append(rule("├", "┼", "┤", "─"))
    lines.append(rule("└", "┴", "┘", "─"))
    everything = total + buffers
    lines += [f" Total params: {everything:,} ({_bytes(4 * everything)})",
              f" Trainable params: {trainable:,} ({_bytes(4 * trainable)})",
              f" Non-trainable params: {everything - trainable:,} ({_bytes(4 * (everything - trainable))})"]
    return lines


def _params(layer: Any) -> int:
    return sum(p.numel() for p in layer.parameters()) + sum(b.numel() for b in layer.buffers()
                                                           if b.is_floating_point())
