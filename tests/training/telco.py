"""A table shaped like the public IBM Telco Customer Churn export, drawn from a seeded RNG with a real signal.

Same columns, same spellings (``No phone service``, ``Month-to-month``, ``Bank transfer (automatic)``),
``SeniorCitizen`` as 0/1, and ``TotalCharges`` as text that is a single space for customers in their first
month, as in the published CSV. Churn follows a logistic model of contract, tenure, fiber, payment method
and charges, so a model that reads the columns right ranks well above chance.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SERVICES = ("OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV", "StreamingMovies")
COLUMNS = (
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    *SERVICES,
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
    "Churn",
)
PAYMENTS = ("Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)")
FIRST_REPORT = date(2023, 1, 31)


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "Yes", "No")


def telco_columns(rows: int, seed: int) -> dict[str, np.ndarray]:
    """The table's columns (strings, except SeniorCitizen and tenure as ints, MonthlyCharges as floats)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids = [f"{d:04d}-{''.join(rng.choice(letters, 5))}" for d in rng.integers(0, 10_000, rows)]
    contract = rng.choice(["Month-to-month", "One year", "Two year"], rows, p=[0.55, 0.21, 0.24])
    tenure = np.where(contract == "Month-to-month", rng.integers(0, 40, rows), rng.integers(0, 73, rows)).astype(
        np.int64
    )
    phone = rng.random(rows) < 0.9
    internet = rng.choice(["DSL", "Fiber optic", "No"], rows, p=[0.34, 0.44, 0.22])
    senior = (rng.random(rows) < 0.16).astype(np.int64)
    payment = rng.choice(PAYMENTS, rows, p=[0.34, 0.23, 0.22, 0.21])
    services = {s: np.where(internet == "No", "No internet service", _yes_no(rng.random(rows) < 0.4)) for s in SERVICES}
    monthly = np.round(
        18.25
        + 10 * phone
        + np.select([internet == "DSL", internet == "Fiber optic"], [25.0, 50.0], 0.0)
        + 5 * sum(services[s] == "Yes" for s in SERVICES)
        + rng.normal(0, 3, rows).clip(-5, 5),
        2,
    )
    total = np.where(
        tenure == 0,
        " ",
        [
            f"{t * m * rng.uniform(0.95, 1.05):.2f}".rstrip("0").rstrip(".")
            for t, m in zip(tenure, monthly, strict=True)
        ],
    )
    logit = (
        -1.2
        + 1.4 * (contract == "Month-to-month")
        - 1.0 * (contract == "Two year")
        + 0.9 * (internet == "Fiber optic")
        - 0.045 * tenure
        + 0.5 * (payment == "Electronic check")
        + 0.35 * senior
        - 0.5 * (services["TechSupport"] == "Yes")
        - 0.4 * (services["OnlineSecurity"] == "Yes")
        + 0.01 * (monthly - 65)
    )
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return {
        "customerID": np.array(ids),
        "gender": rng.choice(["Female", "Male"], rows),
        "SeniorCitizen": senior,
        "Partner": _yes_no(rng.random(rows) < 0.48),
        "Dependents": _yes_no(rng.random(rows) < 0.3),
        "tenure": tenure,
        "PhoneService": _yes_no(phone),
        "MultipleLines": np.where(phone, _yes_no(rng.random(rows) < 0.46), "No phone service"),
        "InternetService": internet,
        **services,
        "Contract": contract,
        "PaperlessBilling": _yes_no(rng.random(rows) < 0.59),
        "PaymentMethod": payment,
        "MonthlyCharges": monthly,
        "TotalCharges": total,
        "Churn": _yes_no(churn),
    }


def report_dates(rows: int, seed: int) -> np.ndarray:
    """A month-end report date per row over a year, for the time-split variant (ISO text)."""
    months = np.random.default_rng(seed + 1).integers(0, 12, rows)
    return np.array([(FIRST_REPORT + timedelta(days=31 * int(m))).replace(day=28).isoformat() for m in months])


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> Path:
    """The columns as the export writes them: a header, then every cell as text, quoted only when needed."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*(c.tolist() for c in columns.values()), strict=True))
    return path


def write_parquet(path: Path, columns: dict[str, np.ndarray]) -> Path:
    """The columns with their numpy types (ints and floats typed, the rest strings), as pandas would save them."""
    pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), path)
    return path
