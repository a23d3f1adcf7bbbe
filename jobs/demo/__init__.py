"""Building blocks of the demo delivery generator (`jobs.demo_data`).

- `sources`  finds and loads the real images that ship inside installed
  packages (pydicom, pydicom-data, deid-data, nilearn's MNI152 brain).
- `imaging`  turns them into new pixel arrays: MR series resampled from the
  MNI152 volume, a CT head stack from one real CT slice, radiograph variants
  (each patient's anatomy deformed its own way), and the image-quality
  defects (noise, blur, saturation, ...).
- `dicom`    writes proper DICOM: file meta, patient/study/series/equipment
  modules, deterministic UIDs, encodings.
- `damage`   the broken objects: empty, not DICOM, truncated, corrupt header.
"""
