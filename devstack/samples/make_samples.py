"""Write the bundled sample Drive folder (devstack/samples/drive/), byte for byte reproducibly.

    python devstack/samples/make_samples.py [--out DIR]

Every file comes from a seeded generator; the XLSX gets fixed zip and document timestamps,
so re-running produces identical bytes (tests/drive_emulator/test_samples.py checks this).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import zipfile
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "drive"
SALES_COLUMNS = ["Order ID", "Order Date", "Region", "Product", "Units", "Unit Price"]
REGIONS = ["North", "South", "East", "West"]
PRODUCTS = {"Widget": 4.5, "Gadget": 12.0, "Gizmo": 27.25, "Sprocket": 1.8, "Doohickey": 9.99}
QUARTER_MONTHS = {1: (1, 2, 3), 2: (4, 5, 6), 3: (7, 8, 9), 4: (10, 11, 12)}
FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def sales_csv(year: int, quarter: int, rows: int, seed: int, first_id: int) -> bytes:
    """A quarter of orders, comma-separated UTF-8 with a header row."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SALES_COLUMNS)
    for i in range(rows):
        product = rng.choice(sorted(PRODUCTS))
        month = rng.choice(QUARTER_MONTHS[quarter])
        writer.writerow(
            [
                f"SO-{first_id + i:05d}",
                f"{year}-{month:02d}-{rng.randint(1, 28):02d}",
                rng.choice(REGIONS),
                product,
                rng.randint(1, 40),
                f"{PRODUCTS[product]:.2f}",
            ]
        )
    return out.getvalue().encode()


def european_csv() -> bytes:
    """Semicolon-delimited, latin-1, decimal commas and accented text (a French export)."""
    rng = random.Random(7)
    lines = ["Commande;Date;Région;Produit;Quantité;Prix unitaire"]
    cities = ["Orléans", "Besançon", "Nîmes", "Angoulême", "Évry"]
    products = {"Crème brûlée": 3.5, "Pâté en croûte": 8.25, "Café moulu": 6.1}
    for i in range(24):
        product = rng.choice(sorted(products))
        price = f"{products[product]:.2f}".replace(".", ",")
        day = f"{rng.randint(1, 28):02d}/0{rng.randint(1, 9)}/2024"
        lines.append(
            f"FR-{i + 1:04d};{day};{rng.choice(cities)};{product};{rng.randint(1, 12)};{price}"
        )
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def budget_xlsx() -> bytes:
    """A two-sheet workbook (Budget, Actuals) with fixed timestamps."""
    from openpyxl import Workbook

    rng = random.Random(11)
    workbook = Workbook()
    budget = workbook.active
    budget.title = "Budget"
    actuals = workbook.create_sheet("Actuals")
    budget.append(["Department", "Month", "Budget"])
    actuals.append(["Department", "Month", "Actual"])
    for department in ("Sales", "Marketing", "Operations"):
        for month in range(1, 7):
            planned = rng.randint(20, 80) * 1000
            budget.append([department, f"2024-{month:02d}", planned])
            actuals.append([department, f"2024-{month:02d}", planned + rng.randint(-5, 5) * 500])
    raw = io.BytesIO()
    workbook.save(raw)
    return _normalize_zip(raw.getvalue())


def _normalize_zip(data: bytes) -> bytes:
    """Re-pack a zip with fixed member timestamps and a fixed docProps modified time."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*",
                    rb"\g<1>2024-01-01T00:00:00Z",
                    content,
                )
            member = zipfile.ZipInfo(info.filename, FIXED_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            target.writestr(member, content)
    return out.getvalue()


def prices_parquet() -> bytes:
    """Product price list as Parquet (no pandas metadata, so bytes depend only on pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = sorted(PRODUCTS)
    table = pa.table(
        {
            "product": names,
            "unit_price": [PRODUCTS[n] for n in names],
            "currency": ["USD"] * len(names),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


def sample_files() -> dict[str, bytes]:
    """Relative path -> bytes for every file in the sample folder."""
    catalog = [
        {"sku": f"SKU-{i:03d}", "product": name, "active": i % 4 != 0, "tags": ["retail"]}
        for i, name in enumerate(sorted(PRODUCTS), start=1)
    ]
    rng = random.Random(5)
    clicks = "".join(
        json.dumps({"ts": f"2024-05-01T10:{i:02d}:00Z", "page": rng.choice(["/", "/buy"])}) + "\n"
        for i in range(20)
    )
    return {
        "sales/2024/q1.csv": sales_csv(2024, 1, 30, seed=1, first_id=1),
        "sales/2024/q2.csv": sales_csv(2024, 2, 30, seed=2, first_id=31),
        "sales/2024/q0_draft.csv": sales_csv(2024, 1, 3, seed=3, first_id=90000),
        "sales/2024/.drive.json": _json({"entries": {"q0_draft.csv": {"trashed": True}}}),
        "sales/2025/q1.csv": sales_csv(2025, 1, 30, seed=4, first_id=61),
        "finance/budget_2024.xlsx": budget_xlsx(),
        "targets.gsheet.csv": b"Region,Target 2024,Target 2025\nNorth,120000,132000\n"
        b"South,95000,101000\nEast,143000,150000\nWest,88000,97000\n",
        "broken/bad.csv": b'Order ID,Region,Units\nSO-1,"North,12\nSO-2,South,"7\n\x00\xff\xfe,"',
        "europe/ventes_été.csv": european_csv(),
        "products/catalog.json": _json(catalog),
        "products/prices.parquet": prices_parquet(),
        "events/clicks.jsonl": clicks.encode(),
        "README.gdoc.txt": b"Sample Drive folder for drivepipe.\n\nThis Google Doc is not "
        b"tabular data: pipelines skip it with a reason.\n",
        "shortcuts/latest_sales.shortcut": b"",
        "shortcuts/.drive.json": _json(
            {"entries": {"latest_sales.shortcut": {"shortcutTarget": "sales/2025/q1.csv"}}}
        ),
    }


def _json(doc: object) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def write_samples(out: Path) -> list[Path]:
    """Write every sample file under `out`; returns the written paths."""
    written = []
    for relpath, data in sample_files().items():
        path = out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: write the samples and list them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in write_samples(args.out):
        print(f"{path.stat().st_size:>8}  {path.relative_to(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
