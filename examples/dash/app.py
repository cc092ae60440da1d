"""A Dash app over eddy's results in MongoDB or SQLite.

    pip install -r examples/dash/requirements.txt
    python3 examples/dash/app.py --mongodb mongodb://127.0.0.1:27017/eddy --port 8050
    python3 examples/dash/app.py --sqlite results.db --port 8050

Every 2 s it reads what eddy's database sink has committed and shows:
- "Top items": the latest complete `item_counts_60s` window as a table
  (item_id, views, clicks, purchases), most viewed first. A window is
  complete when its items' totals add up to the window's interactions in
  `activity_60s`: every worker's rows of it are committed;
- interactions and active users per window (`activity_60s`);
- the newest alerts (`alerts`);
- for a symbol picked from a list, its 1 s closes (`bars_1s`) and its 10 s
  mean (`stats_10s`).
"""

import argparse
import datetime
import sqlite3

import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update

REFRESH_MS = 2000
TOP_ITEMS = 10
ALERTS_SHOWN = 20
POINTS_SHOWN = 300


class MongoResults:
    """eddy's collections in MongoDB (the database from the URI's path)."""

    def __init__(self, uri):
        from pymongo import MongoClient

        client = MongoClient(uri, serverSelectionTimeoutMS=5000)
        self.db = client.get_default_database("eddy")
        self.where = uri

    def rows(self, table, equal=None, newest_by=None, limit=0):
        """Rows of `table` with the fields in `equal`, the `limit` largest by
        `newest_by` when given, as a DataFrame."""
        cursor = self.db[table].find(equal or {}, {"_id": False})
        if newest_by:
            cursor = cursor.sort(newest_by, -1)
        return pd.DataFrame(list(cursor.limit(limit)))

    def values(self, table, column):
        return sorted(self.db[table].distinct(column))


class SqliteResults:
    """eddy's tables in an SQLite file (opened read-only)."""

    def __init__(self, path):
        self.path = path
        self.where = path

    def rows(self, table, equal=None, newest_by=None, limit=0):
        sql = f'SELECT * FROM "{table}"'
        params = []
        if equal:
            sql += " WHERE " + " AND ".join(f'"{c}" = ?' for c in equal)
            params = list(equal.values())
        if newest_by:
            sql += f' ORDER BY "{newest_by}" DESC'
        if limit:
            sql += f" LIMIT {int(limit)}"
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                return pd.read_sql_query(sql, db, params=params)
        except (sqlite3.OperationalError, pd.errors.DatabaseError):
            return pd.DataFrame()  # not created yet

    def values(self, table, column):
        frame = self.rows(table)
        return sorted(frame[column].unique()) if column in frame else []


def latest_complete_window(results):
    """The newest window whose item rows add up to its interactions, and
    those rows; (None, empty) while there is none."""
    for _, window in results.rows("activity_60s", newest_by="window_start_ms", limit=5).iterrows():
        start = int(window["window_start_ms"])
        items = results.rows("item_counts_60s", equal={"window_start_ms": start})
        if not items.empty and int(items["total"].sum()) == int(window["interactions"]):
            return start, items
    return None, pd.DataFrame()


def clock(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


def html_table(frame, columns, table_id):
    cell = {"border": "1px solid #ccc", "padding": "2px 10px", "textAlign": "right"}
    head = html.Tr([html.Th(c, style=cell) for c in columns])
    body = [
        html.Tr([html.Td(str(row[c]), style=cell) for c in columns])
        for _, row in frame.iterrows()
    ]
    return html.Table(
        [html.Thead(head), html.Tbody(body)],
        id=table_id,
        style={"borderCollapse": "collapse"},
    )


def top_items(results):
    start, items = latest_complete_window(results)
    if start is None:
        return html.P("no complete window yet", id="top-items-empty")
    top = items.sort_values(["views", "item_id"], ascending=[False, True]).head(TOP_ITEMS)
    return html.Div(
        [
            html.P(f"window starting {clock(start)} ({start})", id="top-items-window"),
            html_table(top, ["item_id", "views", "clicks", "purchases"], "top-items"),
        ]
    )


def activity_figure(results):
    frame = results.rows("activity_60s", newest_by="window_start_ms", limit=POINTS_SHOWN)
    figure = go.Figure()
    if not frame.empty:
        frame = frame.sort_values("window_start_ms")
        at = pd.to_datetime(frame["window_start_ms"], unit="ms")
        figure.add_bar(x=at, y=frame["interactions"], name="interactions")
        figure.add_scatter(x=at, y=frame["users"], name="active users", yaxis="y2")
    figure.update_layout(
        title="Interactions and active users per 60 s window",
        yaxis={"title": "interactions"},
        yaxis2={"title": "users", "overlaying": "y", "side": "right", "rangemode": "tozero"},
        margin={"t": 40, "b": 30},
        height=320,
    )
    return figure


def alerts_table(results):
    frame = results.rows("alerts", newest_by="window_start_ms", limit=ALERTS_SHOWN)
    if frame.empty:
        return html.P("no alerts yet", id="alerts-empty")
    frame = frame.sort_values(["window_start_ms", "total"], ascending=[False, False])
    return html_table(frame, ["window_start_ms", "item_id", "total", "threshold"], "alerts")


def symbol_figure(results, symbol):
    figure = go.Figure()
    if symbol:
        bars = results.rows("bars_1s", {"symbol": symbol}, "window_start_ms", POINTS_SHOWN)
        stats = results.rows("stats_10s", {"symbol": symbol}, "window_start_ms", POINTS_SHOWN)
        if not bars.empty:
            bars = bars.sort_values("window_start_ms")
            # A bar's close is the price at its end.
            at = pd.to_datetime(bars["window_start_ms"] + 1000, unit="ms")
            figure.add_scatter(x=at, y=bars["close"], name="1 s close", mode="lines")
        if not stats.empty:
            stats = stats.sort_values("window_start_ms")
            at = pd.to_datetime(stats["window_start_ms"] + 10000, unit="ms")
            figure.add_scatter(x=at, y=stats["mean"], name="10 s mean", mode="lines")
    figure.update_layout(
        title=f"{symbol or 'pick a symbol'}: 1 s closes and the 10 s mean",
        margin={"t": 40, "b": 30},
        height=320,
    )
    return figure


def make_app(results):
    app = Dash(__name__, title="eddy results")
    app.layout = html.Div(
        [
            html.H2("eddy results"),
            html.P(id="status"),
            dcc.Interval(id="tick", interval=REFRESH_MS),
            html.H3("Top items"),
            html.Div(id="top-items-box"),
            dcc.Graph(id="activity"),
            html.H3("Alerts"),
            html.Div(id="alerts-box"),
            html.H3("Prices"),
            dcc.Dropdown(id="symbol", placeholder="symbol"),
            dcc.Graph(id="prices"),
        ],
        style={"fontFamily": "sans-serif", "maxWidth": "1000px", "margin": "auto"},
    )

    @app.callback(
        Output("status", "children"),
        Output("top-items-box", "children"),
        Output("activity", "figure"),
        Output("alerts-box", "children"),
        Output("symbol", "options"),
        Output("symbol", "value"),
        Input("tick", "n_intervals"),
        State("symbol", "value"),
    )
    def refresh(_, symbol):
        now = datetime.datetime.now().strftime("%H:%M:%S")
        symbols = results.values("bars_1s", "symbol")
        return (
            f"{results.where}, read at {now}",
            top_items(results),
            activity_figure(results),
            alerts_table(results),
            symbols,
            # The first symbol until one is picked.
            no_update if symbol or not symbols else symbols[0],
        )

    @app.callback(
        Output("prices", "figure"),
        Input("symbol", "value"),
        Input("tick", "n_intervals"),
    )
    def prices(symbol, _):
        return symbol_figure(results, symbol)

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mongodb", metavar="URI", help="eddy's MongoDB sink's URI")
    source.add_argument("--sqlite", metavar="FILE", help="eddy's SQLite sink's file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args()
    results = MongoResults(args.mongodb) if args.mongodb else SqliteResults(args.sqlite)
    make_app(results).run(host=args.host, port=args.port, debug=False)


if __name__ == "__main__":
    main()
