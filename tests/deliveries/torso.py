"""An analytic chest / upper-abdomen phantom in Hounsfield units.

Each patient gets a `Torso`: body habitus, fat, lung and heart size, contrast
phase, a tree of pulmonary vessels and bowel gas, placed on the table. Any axial
plane can be evaluated (`axial`), and frontal or lateral projections give
topograms and radiographs (`projection`). Coordinates are patient LPS mm;
z = `carina` is the carina, the lungs span about 90 mm above to 170 mm below it.

HU: air -1000, lung -850, fat -100, water 0, soft tissue 40-60, contrast blood
150-300, cancellous bone 200-300, cortical bone 700-1200.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _soft_ellipse(xx, yy, cx, cy, a, b, edge=0.8):
    """Partial-volume fraction of an ellipse (semi-axes a, b mm) on grid xx, yy."""
    if a <= 0 or b <= 0:
        return np.zeros(np.broadcast(xx, yy).shape, np.float32)
    u = (xx - np.float32(cx)) * np.float32(1.0 / a)
    v = (yy - np.float32(cy)) * np.float32(1.0 / b)
    r = np.sqrt(u * u + v * v)
    k = np.float32(min(a, b) / edge)
    return np.clip((np.float32(1.0) - r) * k + np.float32(0.5), 0.0, 1.0)


class Canvas:
    """An HU image on a regular grid with painting in bounding boxes."""

    def __init__(self, x0: float, y0: float, dx: float, dy: float, rows: int, cols: int,
                 fill: float = -1000.0):
        self.x = x0 + dx * np.arange(cols, dtype=np.float32)
        self.y = y0 + dy * np.arange(rows, dtype=np.float32)
        self.dx, self.dy = dx, dy
        self.img = np.full((rows, cols), fill, np.float32)

    def _box(self, cx, cy, a, b):
        nx, ny = len(self.x), len(self.y)
        x0, y0 = float(self.x[0]), float(self.y[0])
        j0 = min(max(int((cx - a - x0) / self.dx) - 2, 0), nx)
        j1 = min(max(int((cx + a - x0) / self.dx) + 3, 0), nx)
        i0 = min(max(int((cy - b - y0) / self.dy) - 2, 0), ny)
        i1 = min(max(int((cy + b - y0) / self.dy) + 3, 0), ny)
        return slice(i0, i1), slice(j0, j1)

    def ellipse(self, cx, cy, a, b, value, alpha=1.0):
        si, sj = self._box(cx, cy, a, b)
        if si.stop <= si.start or sj.stop <= sj.start:
            return
        m = _soft_ellipse(self.x[None, sj], self.y[si, None], cx, cy, a, b,
                          edge=max(self.dx, 0.5)) * alpha
        sub = self.img[si, sj]
        self.img[si, sj] = sub * (1 - m) + value * m

    def table(self, cx, top, value=250.0, foam=-850.0):
        """A curved table: a 3 mm shell, foam, and a bottom plate (y = top at the centre,
        edges curving towards the patient)."""
        x = self.x[None, :]
        y = self.y[:, None]
        curve = top - (x - cx) ** 2 / 900.0
        inside = np.abs(x - cx) < 230
        shell = inside & (y >= curve) & (y < curve + 3)
        core = inside & (y >= curve + 3) & (y < curve + 28)
        bottom = inside & (y >= curve + 28) & (y < curve + 31)
        self.img[core] = foam
        self.img[shell | bottom] = value

    def ring(self, cx, cy, a, b, width, value):
        si, sj = self._box(cx, cy, a, b)
        if si.stop <= si.start or sj.stop <= sj.start:
            return
        xx, yy = self.x[None, sj], self.y[si, None]
        m = (_soft_ellipse(xx, yy, cx, cy, a, b, max(self.dx, 0.5))
             - _soft_ellipse(xx, yy, cx, cy, a - width, b - width, max(self.dx, 0.5)))
        m = np.clip(m, 0, 1)
        sub = self.img[si, sj]
        self.img[si, sj] = sub * (1 - m) + value * m


@dataclass
class Torso:
    cx: float
    cy: float
    half_width: float
    half_depth: float
    fat: float
    lung: float
    heart: float
    carina: float
    blood: float
    vessels: np.ndarray   # (n, 7): x0 y0 z0 x1 y1 z1 radius, relative to the carina
    bowel: np.ndarray     # (n, 5): x y z radius gas(1)/fluid(0)
    female: bool

    @staticmethod
    def random(r: np.random.Generator, female: bool, contrast: bool) -> "Torso":
        build = float(r.uniform(0.85, 1.2))
        vessels = []
        for side in (-1, 1):
            hilum = np.array([side * 35.0, 5.0, -25.0])
            for _ in range(70):
                d = r.normal(0, 1, 3) * np.array([1.0, 0.9, 1.6])
                d /= np.linalg.norm(d) + 1e-9
                d[0] = side * abs(d[0])
                length = r.uniform(40, 120)
                start = hilum + d * r.uniform(0, 25)
                end = start + d * length
                vessels.append([*start, *end, r.uniform(1.0, 4.5)])
        bowel = np.column_stack([r.uniform(-90, 90, 40), r.uniform(-70, 10, 40),
                                 r.uniform(-330, -200, 40), r.uniform(6, 16, 40),
                                 (r.random(40) < 0.45).astype(float)])
        return Torso(cx=float(r.uniform(-15, 15)), cy=float(r.uniform(-10, 10)),
                     half_width=155.0 * build, half_depth=105.0 * build * r.uniform(0.9, 1.1),
                     fat=float(r.uniform(6, 30)) * build, lung=float(r.uniform(0.85, 1.1)),
                     heart=float(r.uniform(0.85, 1.2)), carina=float(r.uniform(-40, 40)),
                     blood=float(r.uniform(180, 300)) if contrast else float(r.uniform(35, 48)),
                     vessels=np.array(vessels), bowel=bowel, female=female)

    def axial(self, z: float, x0: float, y0: float, dx: float, dy: float, rows: int,
              cols: int) -> np.ndarray:
        """HU on the axial plane at table position z; pixel (0, 0) at (x0, y0) LPS.
        The last few planes are kept, since reconstructions with other kernels
        of the same scan ask for them again (callers must not change the result)."""
        key = (round(z, 4), round(x0, 4), round(y0, 4), dx, dy, rows, cols)
        cache = self.__dict__.setdefault("_planes", {})
        if key not in cache:
            c = Canvas(x0, y0, dx, dy, rows, cols)
            self._paint(c, z)
            if len(cache) >= 80:
                cache.pop(next(iter(cache)))
            c.img.setflags(write=False)
            cache[key] = c.img
        return cache[key]

    def _paint(self, c: Canvas, z: float, table: bool = True) -> None:
        zr = z - self.carina
        cx, cy = self.cx, self.cy
        shoulders = np.clip((zr - 60) / 40, 0, 1)
        abdomen = np.clip((-zr - 150) / 60, 0, 1)
        a = self.half_width * (1 + 0.18 * shoulders - 0.05 * abdomen)
        b = self.half_depth * (1 - 0.05 * shoulders + 0.08 * abdomen)
        if zr > 160 or zr < -420:
            return
        # table under the patient (posterior = +y)
        if table:
            c.table(cx, cy + b + 6)
        c.ellipse(cx, cy, a, b, -100.0)                     # skin and subcutaneous fat
        if self.female and -160 < zr < 40:
            for side in (-1, 1):
                c.ellipse(cx + side * 0.45 * a, cy - b * 0.85, 0.28 * a, 0.3 * b, -60.0)
                c.ellipse(cx + side * 0.45 * a, cy - b * 0.85, 0.18 * a, 0.18 * b, 20.0)
        ia, ib = a - self.fat, b - self.fat
        c.ellipse(cx, cy, ia, ib, 50.0)                     # muscle wall
        ca, cb = ia - 14, ib - 14                           # cavity
        spine_y = cy + ib - 42
        in_chest = -175 < zr < 110
        if in_chest:
            c.ellipse(cx, cy - 4, ca, cb, -90.0)            # mediastinal / pleural fat
            self._ribs(c, zr, cx, cy, ca + 7, cb + 7)
            if zr < 70:
                c.ellipse(cx, cy - ib + 9, 14, 6, 420.0)     # sternum
                c.ellipse(cx, cy - ib + 9, 9, 3, 200.0)
        else:
            c.ellipse(cx, cy, ca, cb, 30.0)
        if zr >= 90:                                          # neck base and shoulder girdle
            c.ellipse(cx + 2, cy - 18, 10, 9, 45.0)
            c.ellipse(cx + 2, cy - 18, 8, 7, -1000.0)
            for side in (-1, 1):
                c.ellipse(cx + side * 22, cy - 22, 5, 5, self.blood)
                c.ellipse(cx + side * 0.55 * a, cy - 0.55 * b, 0.3 * a, 7, 700.0)      # clavicle
                c.ellipse(cx + side * 0.62 * a, cy + 0.45 * b, 0.25 * a, 6, 650.0)     # scapula
        self._spine(c, zr, cx, spine_y)
        if in_chest:
            self._lungs(c, zr, cx, cy, ca, cb)
            self._mediastinum(c, zr, cx, cy, spine_y)
        if zr < -120:
            self._abdomen(c, zr, cx, cy, ca, cb, spine_y)

    def _ribs(self, c, zr, cx, cy, ra, rb):
        phase = (zr % 24.0) / 24.0
        n = 8
        for k in range(n):
            ang = np.pi * (0.14 + 0.72 * (k + phase) / n)
            for side in (-1, 1):
                x = cx + side * ra * np.sin(ang)
                y = cy + rb * np.cos(ang) * 0.98
                long = 9.0 if 0.3 < ang / np.pi < 0.7 else 5.0
                c.ellipse(x, y, 4.5 if long > 6 else long, long if long > 6 else 4.5, 750.0)
                c.ellipse(x, y, 2.5, 2.5, 260.0)

    def _spine(self, c, zr, cx, y):
        disc = (zr % 26.0) < 5.0
        body = 90.0 if disc else 270.0
        c.ellipse(cx, y - 6, 19, 16, 700.0 if not disc else 90.0)
        c.ellipse(cx, y - 6, 16, 13, body)
        c.ellipse(cx, y + 17, 8, 7, 700.0)                  # neural arch
        c.ellipse(cx, y + 16, 6, 5, 15.0)                   # canal
        c.ellipse(cx, y + 33, 5, 10, 650.0)                 # spinous process
        for side in (-1, 1):
            c.ellipse(cx + side * 22, y + 24, 10, 18, 55.0)  # paraspinal muscles
            c.ellipse(cx + side * 14, y + 14, 7, 4, 600.0)   # transverse processes

    def _lungs(self, c, zr, cx, cy, ca, cb):
        for side in (-1, 1):
            base = -150.0 if side < 0 else -165.0           # right dome higher (liver)
            apex = 95.0
            if not base < zr < apex:
                continue
            t = (zr - base) / (apex - base)
            size = np.clip(np.sin(np.pi * (0.18 + 0.82 * t)) ** 0.6, 0, 1) * self.lung
            size *= np.clip((zr - base) / 35.0, 0.25, 1.0) ** 0.5
            la = 0.46 * ca * size + 4
            lb = 0.9 * cb * size + 4
            lx = cx + side * (0.49 * ca)
            c.ellipse(lx, cy + 6, la, lb, -860.0)
        # vessels crossing this plane
        v = self.vessels
        z0, z1 = v[:, 2], v[:, 5]
        lo, hi = np.minimum(z0, z1), np.maximum(z0, z1)
        hit = (lo <= zr) & (hi >= zr) & (np.abs(z1 - z0) > 1e-3)
        for row in v[hit]:
            t = (zr - row[2]) / (row[5] - row[2])
            x = cx + row[0] + t * (row[3] - row[0])
            y = cy + row[1] + t * (row[4] - row[1])
            rad = row[6] * (1.0 - 0.6 * t)
            cos = abs(row[5] - row[2]) / (np.linalg.norm(row[3:6] - row[:3]) + 1e-6)
            c.ellipse(x, y, rad * min(1.0 / max(cos, 0.4), 2.5), rad, self.blood * 0.6 + 10,
                      alpha=0.95)
        # airways
        if zr > 0:
            c.ellipse(cx + 2, cy - 18, 10, 9, 45.0)
            c.ellipse(cx + 2, cy - 18, 8, 7, -1000.0)
        elif zr > -35:
            for side in (-1, 1):
                off = side * (8 + (-zr) * 0.6)
                c.ellipse(cx + off, cy - 14, 7, 6, 45.0)
                c.ellipse(cx + off, cy - 14, 5, 4.5, -1000.0)

    def _mediastinum(self, c, zr, cx, cy, spine_y):
        blood = self.blood
        if -165 < zr < -35:
            h = np.clip(np.sin(np.pi * (zr + 165) / 130), 0, 1) ** 0.7 * self.heart
            c.ellipse(cx + 22, cy - 22, 60 * h + 5, 48 * h + 5, 48.0)       # myocardium
            c.ellipse(cx + 28, cy - 20, 38 * h + 3, 30 * h + 3, blood)       # ventricles
            c.ellipse(cx + 10, cy - 24, 14 * h + 2, 12 * h + 2, 45.0)       # septum
        if zr < 25:
            c.ellipse(cx + 16, spine_y - 30, 12, 12, blood)                  # descending aorta
        if -90 < zr < 22:
            c.ellipse(cx - 10, cy - 34, 15, 15, blood)                       # ascending aorta
            c.ellipse(cx + 16, cy - 40, 13, 12, blood * 0.9 + 5)             # pulmonary trunk
        if 20 <= zr < 40:
            c.ellipse(cx + 4, cy - 12, 34, 12, blood)                        # arch
        if zr > 40:
            for side, off in ((-1, -8), (1, 10), (1, 22)):
                c.ellipse(cx + off, cy - 30, 6, 6, blood)                    # arch branches
        c.ellipse(cx + 6, spine_y - 20, 7, 6, 40.0)                          # oesophagus
        c.ellipse(cx + 6, spine_y - 20, 2, 2, -900.0)

    def _abdomen(self, c, zr, cx, cy, ca, cb, spine_y):
        if -280 < zr < -120:
            s = np.clip(np.sin(np.pi * (zr + 280) / 160), 0, 1) ** 0.5
            c.ellipse(cx - 0.35 * ca, cy - 5, 0.6 * ca * s + 3, 0.75 * cb * s + 3, 62.0)  # liver
        if -250 < zr < -140:
            s = np.clip(np.sin(np.pi * (zr + 250) / 110), 0, 1) ** 0.5
            c.ellipse(cx + 0.55 * ca, cy + 0.35 * cb, 0.22 * ca * s + 2, 0.3 * cb * s + 2, 52.0)
            c.ellipse(cx + 0.35 * ca, cy - 0.35 * cb, 0.28 * ca * s + 2, 0.22 * cb * s + 2, 25.0)
            c.ellipse(cx + 0.35 * ca, cy - 0.5 * cb, 0.2 * ca * s + 1, 0.1 * cb * s + 1, -1000.0)
        if -360 < zr < -230:
            s = np.clip(np.sin(np.pi * (zr + 360) / 130), 0, 1) ** 0.5
            for side in (-1, 1):
                c.ellipse(cx + side * 0.42 * ca, spine_y - 5, 0.14 * ca * s + 2, 0.2 * cb * s + 2, 150.0
                          if self.blood > 100 else 35.0)
                c.ellipse(cx + side * 0.42 * ca, spine_y - 5, 0.05 * ca * s + 1, 0.07 * cb * s + 1, -40.0)
        if zr < -270:
            for side in (-1, 1):
                c.ellipse(cx + side * 32, spine_y + 2, 15, 18, 48.0)         # psoas
        c.ellipse(cx + 14, spine_y - 28, 11, 11, self.blood)                 # aorta
        c.ellipse(cx - 18, spine_y - 30, 12, 10, self.blood * 0.8 + 10)      # IVC
        for x, y, z, rad, gas in self.bowel:
            dz = abs(zr - z)
            if dz < rad:
                rr = np.sqrt(rad * rad - dz * dz)
                c.ellipse(cx + x, cy + y, rr + 2, rr + 2, 35.0)
                c.ellipse(cx + x, cy + y, rr, rr, -1000.0 if gas else 15.0)

    def projection(self, z_top: float, z_bottom: float, width: float, rows: int, cols: int,
                   axis: str = "ap", step: float = 4.0, samples: int = 128,
                   table: bool = True) -> np.ndarray:
        """Line integrals of attenuation (water = 1 per cm) through the torso,
        frontal ("ap", summed over y) or lateral ("lat", summed over x); rows run
        from z_top down to z_bottom, columns across `width` mm."""
        zs = np.arange(z_top, z_bottom, -step)
        n = samples
        dx = width / n
        out = np.zeros((len(zs), n), np.float32)
        for k, z in enumerate(zs):
            c = Canvas(self.cx - width / 2, self.cy - width / 2, dx, dx, n, n)
            self._paint(c, z, table=table)
            img = c.img
            mu = np.clip(1.0 + img / 1000.0, 0, None)
            out[k] = (mu.sum(axis=0) if axis == "ap" else mu.sum(axis=1)) * dx / 10.0
        from PIL import Image

        return np.asarray(Image.fromarray(out, mode="F").resize((cols, rows), Image.BILINEAR),
                          dtype=np.float64)
