"""Regenerate ``orders.xlsx``, the sample workbook of the ``orders`` resource.

Run from anywhere: ``python examples/data/make_xlsx.py`` (needs ``pip install 'xresource[excel]'``).
The workbook has two sheets, ``orders`` and ``returns``, so it also shows how
a manifest picks a sheet.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent

ORDERS = [
    ("order_id", "customer_id", "sku", "quantity", "unit_price", "ordered_on"),
    (1001, 1, "KB-001", 1, 89.9, date(2024, 1, 5)),
    (1002, 2, "MS-002", 2, 24.5, date(2024, 1, 7)),
    (1003, 4, "DK-005", 1, 119.99, date(2024, 1, 9)),
    (1004, 6, "HS-004", 1, 149.0, date(2024, 1, 12)),
    (1005, 1, "MN-003", 2, 229.0, date(2024, 1, 15)),
    (1006, 10, "CM-006", 3, 59.0, date(2024, 1, 18)),
]
RETURNS = [
    ("order_id", "returned_on", "reason"),
    (1002, date(2024, 1, 20), "damaged"),
]


def build(path: Path) -> None:
    workbook = Workbook()
    orders = workbook.active
    orders.title = "orders"
    for row in ORDERS:
        orders.append(row)
    returns = workbook.create_sheet("returns")
    for row in RETURNS:
        returns.append(row)
    # Fixed document dates, so regenerating the file does not change its properties.
    workbook.properties.created = workbook.properties.modified = datetime(2024, 1, 31)
    workbook.save(path)


if __name__ == "__main__":
    build(HERE / "orders.xlsx")
    print(f"wrote {HERE / 'orders.xlsx'}")
