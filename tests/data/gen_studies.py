#!/usr/bin/python3
"""Deterministic generator of synthetic DICOM studies for drimbox tests.

Usage: gen_studies.py --set small|full OUTDIR

Writes DICOM Part 10 files, one directory per study
(OUTDIR/<study>/<series number>/<instance number>.dcm), and
OUTDIR/manifest.json describing every study, series and instance (UIDs,
transfer syntax, relative path, size, sha256).

Studies (the "small" set is the same with smaller images):
  ct      CT, 16-bit signed, explicit VR little endian
  ct-jls  the same pixels with distinct UIDs, JPEG-LS lossless (dcmcjpls)
  mr      MR, 4 series in explicit LE, implicit LE, JPEG lossless SV1
          (dcmcjpeg) and RLE (dcmcrle)
  dx      DX for presentation, 16-bit allocated, 14 bits stored
  us      ultrasound multi-frame, YBR_FULL_422 JPEG baseline (dcmcjpeg)

Everything is derived from fixed seeds and fixed UIDs: running it twice
with the same arguments gives byte-identical files.  Only pydicom, numpy
and the DCMTK command-line encoders are used.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

UID_ROOT = "1.2.826.0.1.3680043.10.1234"
SET_NUMBER = {"small": 1, "full": 2}

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"

# Transfer syntax -> DCMTK command compressing an explicit LE file (in, out
# are appended).  "+un": never assign a new SOP Instance UID.
ENCODERS = {
    JPEG_LS_LOSSLESS: ["dcmcjpls", "+el", "+un"],
    JPEG_LOSSLESS_SV1: ["dcmcjpeg", "+e1", "+un"],
    JPEG_BASELINE: ["dcmcjpeg", "+eb", "+q", "90", "+s2", "+un"],
    RLE_LOSSLESS: ["dcmcrle", "+un"],
}

INS_NIR_ISSUER = "ASIP-SANTE-INS-NIR"
INS_NIR_OID = "1.2.250.1.213.1.4.10"
LOCAL_IPP_ISSUER = "CHU-DRIMBOX-IPP"
LOCAL_IPP_OID = "1.2.250.1.999.1.1.1"

# INS NIR test identities (13 digits + key = 97 - n mod 97).
PATIENTS = {
    "p1": {"nir": "279035121518989", "ipp": "IPP1001",
           "name": "PAT-TROIS^DOMINIQUE", "sex": "F", "birth": "19790315"},
    "p2": {"nir": "162018885045327", "ipp": "IPP1002",
           "name": "MARTIN^JEAN-FRANÇOIS", "sex": "M", "birth": "19620127"},
    "p3": {"nir": "274075176079430", "ipp": "IPP1003",
           "name": "LEFÈVRE^HÉLÈNE^MARIE", "sex": "F", "birth": "19740704"},
}

# Per set: CT (slices, size), MR (slices per series, size), DX (rows, cols),
# US (frames, rows, cols).
SIZES = {
    "small": {"ct": (20, 128), "mr": ([5, 5, 4, 6], 64),
              "dx": (300, 256), "us": (5, 64, 80)},
    "full": {"ct": (300, 512), "mr": ([24, 24, 20, 30], 256),
             "dx": (3000, 2500), "us": (30, 480, 640)},
}


def nir_is_valid(nir):
    """True if a 15-digit INS NIR has a correct control key."""
    return (len(nir) == 15 and nir.isdigit()
            and 97 - int(nir[:13]) % 97 == int(nir[13:]))


def uid(set_name, *parts):
    """Fixed UID under UID_ROOT: root.<set>.<parts...>."""
    return ".".join([UID_ROOT, str(SET_NUMBER[set_name])]
                    + [str(p) for p in parts])


class Study:
    """Identity of one study: UIDs, patient and descriptive tags."""

    def __init__(self, set_name, number, key, patient, modality, description,
                 date, time, accession):
        self.set_name = set_name
        self.number = number
        self.key = key
        self.patient = PATIENTS[patient]
        self.modality = modality
        self.description = description
        self.date = date
        self.time = time
        self.accession = accession
        self.uid = uid(set_name, number)

    def series_uid(self, series_number):
        """Series Instance UID of series number N of this study."""
        return uid(self.set_name, self.number, series_number)

    def frame_of_reference_uid(self, series_number):
        """Frame of Reference UID (instance number 0 is never an image)."""
        return uid(self.set_name, self.number, series_number, 0)

    def sop_uid(self, series_number, instance_number):
        """SOP Instance UID of an instance of this study."""
        return uid(self.set_name, self.number, series_number, instance_number)


def patient_study_tags(ds, study):
    """SOP common, patient, general study and equipment modules."""
    p = study.patient
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = p["name"]
    ds.PatientID = p["nir"]
    ds.IssuerOfPatientID = INS_NIR_ISSUER
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([_issuer_qualifiers(INS_NIR_OID)])
    other = Dataset()
    other.PatientID = p["ipp"]
    other.IssuerOfPatientID = LOCAL_IPP_ISSUER
    other.TypeOfPatientID = "TEXT"
    other.IssuerOfPatientIDQualifiersSequence = Sequence([_issuer_qualifiers(LOCAL_IPP_OID)])
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientBirthDate = p["birth"]
    ds.PatientSex = p["sex"]
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.StudyID = str(study.number)
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description
    ds.ReferringPhysicianName = "MÉDECIN^CLAIRE^^DR"
    ds.Manufacturer = "DRIMBOX-SYNTH"
    ds.ManufacturerModelName = "PHANTOM-%s" % study.modality
    ds.InstitutionName = "CHU DE TEST SAINT-ÉTIENNE"
    ds.StationName = "SYNTH%s01" % study.modality


def _issuer_qualifiers(oid):
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    return item


def series_tags(ds, study, series_number, description, body_part):
    """General series module (plus series date and time)."""
    ds.Modality = study.modality
    ds.SeriesInstanceUID = study.series_uid(series_number)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = study.date
    ds.SeriesTime = study.time
    ds.BodyPartExamined = body_part


def instance_tags(ds, study, sop_class, series_number, instance_number):
    """SOP identity, general image module and acquisition time."""
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = study.sop_uid(series_number, instance_number)
    ds.InstanceNumber = instance_number
    ds.ContentDate = study.date
    ds.ContentTime = study.time
    ds.AcquisitionDate = study.date
    ds.AcquisitionTime = study.time
    ds.AcquisitionNumber = 1


def gray_pixel_tags(ds, rows, cols, bits_stored, signed):
    """Image pixel module of a single-sample 16-bit allocated image."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def axial_plane_tags(ds, spacing, thickness, position):
    """Image plane module for an axial slice at a given patient position."""
    ds.PixelSpacing = [spacing, spacing]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [round(v, 3) for v in position]
    ds.SliceThickness = thickness
    ds.SliceLocation = round(position[2], 3)


# ---------------------------------------------------------------- phantoms

def _grid(rows, cols):
    """Normalised coordinates in [-1, 1] (y down, x right), float32."""
    y = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    return y, x


def _ellipse(y, x, cy, cx, ry, rx):
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def ct_slice(y, x, z, rng):
    """Thorax-abdomen axial slice in HU at height z in [0, 1], int16."""
    hu = np.full(np.broadcast(y, x).shape, -1000.0, dtype=np.float32)
    squeeze = 1.0 - 0.08 * np.sin(np.pi * z)
    hu[_ellipse(y, x, 0.05, 0, 0.55, 0.80 * squeeze)] = -100   # fat
    hu[_ellipse(y, x, 0.05, 0, 0.49, 0.73 * squeeze)] = 40     # soft tissue
    if z > 0.35:                                            # lungs
        r = 0.30 * np.sin(np.pi * (z - 0.35) / 0.65) + 0.05
        hu[_ellipse(y, x, -0.02, -0.35, r * 1.1, r)] = -850
        hu[_ellipse(y, x, -0.02, 0.35, r * 1.1, r)] = -850
        hu[_ellipse(y, x, 0.0, 0.08, 0.16, 0.18)] = 45      # heart
    else:                                                   # liver, kidneys
        hu[_ellipse(y, x, -0.05, -0.30, 0.28, 0.32)] = 60
        hu[_ellipse(y, x, 0.25, -0.30, 0.08, 0.06)] = 150
        hu[_ellipse(y, x, 0.25, 0.30, 0.08, 0.06)] = 150
    hu[_ellipse(y, x, 0.15, -0.05, 0.05, 0.05)] = 180        # aorta
    hu[_ellipse(y, x, 0.36, 0, 0.09, 0.09)] = 900           # vertebra
    hu[_ellipse(y, x, 0.36, 0, 0.06, 0.06)] = 250           # marrow
    hu += rng.normal(0.0, 12.0, hu.shape).astype(np.float32)
    stored = np.clip(hu + 1024.0, -1024, 3071).astype(np.int16)
    stored[(y ** 2 + x ** 2) > 1.0] = -2000                 # outside FOV
    return stored


def mr_slice(y, x, z, weighting, rng):
    """Head axial slice, unsigned 12-bit, contrast by weighting."""
    tissue = {"T1": (300, 700, 1100, 150), "T2": (500, 1100, 800, 2200),
              "FLAIR": (200, 900, 700, 100), "DWI": (50, 600, 500, 300)}
    skull, grey, white, csf = tissue[weighting]
    s = 0.85 + 0.15 * np.cos(np.pi * (z - 0.5))
    img = np.zeros(np.broadcast(y, x).shape, dtype=np.float32)
    img[_ellipse(y, x, 0, 0, 0.90 * s, 0.75 * s)] = skull
    img[_ellipse(y, x, 0, 0, 0.82 * s, 0.67 * s)] = grey
    img[_ellipse(y, x, 0, 0, 0.65 * s, 0.52 * s)] = white
    img[_ellipse(y, x, -0.05, -0.12, 0.25 * s, 0.06)] = csf   # ventricles
    img[_ellipse(y, x, -0.05, 0.12, 0.25 * s, 0.06)] = csf
    noisy = np.hypot(img + rng.normal(0, 20, img.shape),
                     rng.normal(0, 20, img.shape))           # Rician
    return np.clip(noisy, 0, 4095).astype(np.uint16)


def dx_image(rows, cols, bits, rng):
    """Chest PA radiograph, MONOCHROME2 (bright = attenuating), unsigned."""
    y, x = np.broadcast_arrays(*_grid(rows, cols))
    top = (1 << bits) - 1
    img = np.full((rows, cols), 0.08, dtype=np.float32)
    img[_ellipse(y, x, 0.1, 0, 1.0, 0.85)] = 0.45            # body
    img[_ellipse(y, x, -0.05, -0.38, 0.62, 0.28)] = 0.22     # lungs
    img[_ellipse(y, x, -0.05, 0.38, 0.62, 0.28)] = 0.22
    img[_ellipse(y, x, 0.15, 0.12, 0.30, 0.25)] = 0.40       # heart
    img[np.abs(x) < 0.07] = 0.70                             # spine
    for k in range(9):                                       # ribs
        cy = -0.6 + 0.14 * k
        band = np.abs(y - cy - 0.25 * x ** 2) < 0.022
        img[band & (np.abs(x) < 0.7)] += 0.12
    img += 0.05 * y                                          # heel effect
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return np.clip(img * top, 0, top).astype(np.uint16)


def us_frames(frames, rows, cols, rng):
    """RGB sector scan with speckle and a colour-Doppler box, uint8."""
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :] - cols / 2
    radius = np.hypot(yy + rows * 0.05, xx)
    angle = np.arctan2(xx, yy + rows * 0.05)
    sector = (np.abs(angle) < 0.6) & (radius < rows * 0.95)
    out = np.zeros((frames, rows, cols, 3), dtype=np.uint8)
    for f in range(frames):
        phase = 2 * np.pi * f / frames
        tissue = 90 + 40 * np.sin(radius / (rows * 0.07) + phase)
        cyst = np.hypot(yy - rows * (0.55 + 0.03 * np.sin(phase)), xx) < rows * 0.12
        tissue[cyst] = 15
        speckle = rng.rayleigh(1.0, (rows, cols)).astype(np.float32)
        gray = np.clip(tissue * speckle * 0.8, 0, 255) * sector
        frame = np.repeat(gray[:, :, None], 3, axis=2)
        box = (np.abs(yy - rows * 0.4) < rows * 0.08) & (np.abs(xx) < cols * 0.06)
        frame[box] = [200 + 50 * np.sin(phase), 60, 20]
        out[f] = frame.astype(np.uint8)
    return out


# ---------------------------------------------------------------- writing

class Writer:
    """Writes datasets (directly or via a DCMTK encoder) and the manifest."""

    def __init__(self, set_name, outdir):
        self.set_name = set_name
        self.outdir = Path(outdir)
        self.staging = self.outdir / ".staging"
        self.jobs = []           # (command, staged file, final file)
        self.studies = []        # manifest entries

    def add_study(self, study):
        """Start the manifest entry of a study; wipes its directory."""
        shutil.rmtree(self.outdir / study.key, ignore_errors=True)
        entry = {"key": study.key, "study_uid": study.uid,
                 "patient_id": study.patient["nir"],
                 "patient_name": study.patient["name"],
                 "accession_number": study.accession,
                 "study_date": study.date, "modality": study.modality,
                 "description": study.description, "series": []}
        self.studies.append(entry)
        return entry

    def write(self, series_entry, ds, pixels, syntax, relpath):
        """Write ds with pixel bytes in the given transfer syntax."""
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.ImplementationClassUID = UID_ROOT + ".0.1"
        ds.file_meta.ImplementationVersionName = "DRIMBOX_GEN_1"
        implicit = syntax == IMPLICIT_LE
        ds.file_meta.TransferSyntaxUID = IMPLICIT_LE if implicit else EXPLICIT_LE
        ds.is_little_endian = True
        ds.is_implicit_VR = implicit
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
        final = self.outdir / relpath
        final.parent.mkdir(parents=True, exist_ok=True)
        if syntax in (EXPLICIT_LE, IMPLICIT_LE):
            ds.save_as(final, write_like_original=False)
        else:
            staged = self.staging / relpath
            staged.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(staged, write_like_original=False)
            self.jobs.append((ENCODERS[syntax], staged, final))
        series_entry["instances"].append(
            {"sop_uid": ds.SOPInstanceUID, "sop_class_uid": ds.SOPClassUID,
             "instance_number": int(ds.InstanceNumber),
             "transfer_syntax": syntax, "path": str(relpath)})

    def finish(self):
        """Run the encoders in parallel, then write manifest.json."""
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            for result in pool.map(_encode, self.jobs):
                if result:
                    sys.exit(result)
        shutil.rmtree(self.staging, ignore_errors=True)
        for study in self.studies:
            for series in study["series"]:
                for inst in series["instances"]:
                    data = (self.outdir / inst["path"]).read_bytes()
                    inst["size"] = len(data)
                    inst["sha256"] = hashlib.sha256(data).hexdigest()
        manifest = {"set": self.set_name, "generator_sha256": generator_digest(),
                    "uid_root": UID_ROOT, "studies": self.studies}
        (self.outdir / "manifest.json").write_text(
            json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8")


def generator_digest():
    """sha256 of this script: identifies the data a manifest describes."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _encode(job):
    """Run one DCMTK encoder; returns an error message or None."""
    command, staged, final = job
    proc = subprocess.run(command + [str(staged), str(final)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return "%s failed on %s: %s" % (command[0], staged, proc.stderr)
    return None


def new_series(study_entry, study, number, description, syntax):
    """Append a series to a manifest study entry and return it."""
    entry = {"series_uid": study.series_uid(number), "series_number": number,
             "description": description, "transfer_syntax": syntax,
             "instances": []}
    study_entry["series"].append(entry)
    return entry


def gen_ct(writer, set_name, slices, size):
    """CT and its JPEG-LS twin: same pixels, distinct UIDs."""
    twins = [Study(set_name, 1, "ct", "p1", "CT", "TDM THORAX-ABDOMEN-PELVIS",
                   "20240115", "101500", "ACC%d0001" % SET_NUMBER[set_name]),
             Study(set_name, 2, "ct-jls", "p1", "CT",
                   "TDM THORAX-ABDOMEN-PELVIS (JPEG-LS)", "20240116",
                   "091000", "ACC%d0002" % SET_NUMBER[set_name])]
    syntaxes = [EXPLICIT_LE, JPEG_LS_LOSSLESS]
    series = []
    for study, syntax in zip(twins, syntaxes):
        entry = new_series(writer.add_study(study), study, 2, "THORAX ABDO 1.0 B30f",
                           syntax)
        series.append(entry)
    y, x = _grid(size, size)
    rng = np.random.default_rng(1001)
    spacing = round(400.0 / size, 4)
    thickness = 1.0 if size >= 512 else round(300.0 / slices, 2)
    for i in range(slices):
        pixels = ct_slice(y, x, i / max(slices - 1, 1), rng).tobytes()
        z = -100.0 - i * thickness
        for study, syntax, entry in zip(twins, syntaxes, series):
            ds = Dataset()
            patient_study_tags(ds, study)
            series_tags(ds, study, 2, entry["description"], "CHEST")
            instance_tags(ds, study, CT_STORAGE, 2, i + 1)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.PatientPosition = "FFS"
            ds.FrameOfReferenceUID = study.frame_of_reference_uid(2)
            ds.PositionReferenceIndicator = ""
            axial_plane_tags(ds, spacing, thickness, [-200.0, -200.0, z])
            gray_pixel_tags(ds, size, size, 16, signed=True)
            ds.add_new("PixelPaddingValue", "SS", -2000)
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter = [40, -600]
            ds.WindowWidth = [400, 1500]
            ds.WindowCenterWidthExplanation = ["ABDOMEN", "POUMON"]
            ds.KVP = 120
            ds.XRayTubeCurrent = 250
            ds.ExposureTime = 500
            ds.ConvolutionKernel = "B30f"
            ds.DataCollectionDiameter = 500
            ds.ReconstructionDiameter = 400
            writer.write(entry, ds, pixels, syntax,
                         Path(study.key, "02", "%04d.dcm" % (i + 1)))


MR_SERIES = [  # number, description, weighting, TR, TE, TI, syntax
    (3, "AX T1 SE", "T1", 500, 12, None, EXPLICIT_LE),
    (4, "AX T2 TSE", "T2", 4500, 95, None, IMPLICIT_LE),
    (5, "AX FLAIR", "FLAIR", 9000, 110, 2500, JPEG_LOSSLESS_SV1),
    (6, "AX DIFFUSION B1000", "DWI", 5000, 80, None, RLE_LOSSLESS),
]


def gen_mr(writer, set_name, slice_counts, size):
    """Brain MR: one series per transfer syntax."""
    study = Study(set_name, 3, "mr", "p3", "MR", "IRM CEREBRALE",
                  "20240203", "143000", "ACC%d0003" % SET_NUMBER[set_name])
    study_entry = writer.add_study(study)
    y, x = _grid(size, size)
    rng = np.random.default_rng(3003)
    spacing = round(230.0 / size, 4)
    for count, (number, desc, weighting, tr, te, ti, syntax) in zip(slice_counts, MR_SERIES):
        entry = new_series(study_entry, study, number, desc, syntax)
        thickness = round(120.0 / count, 2)
        for i in range(count):
            pixels = mr_slice(y, x, i / max(count - 1, 1), weighting, rng).tobytes()
            ds = Dataset()
            patient_study_tags(ds, study)
            series_tags(ds, study, number, desc, "HEAD")
            instance_tags(ds, study, MR_STORAGE, number, i + 1)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM"]
            ds.PatientPosition = "HFS"
            ds.FrameOfReferenceUID = study.frame_of_reference_uid(3)
            ds.PositionReferenceIndicator = ""
            axial_plane_tags(ds, spacing, thickness,
                             [-115.0, -115.0, -40.0 + i * thickness])
            gray_pixel_tags(ds, size, size, 12, signed=False)
            ds.ScanningSequence = ["SE", "IR"] if ti else ["SE"]
            ds.SequenceVariant = ["SK", "SP"]
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = tr
            ds.EchoTime = te
            if ti:
                ds.InversionTime = ti
            ds.EchoTrainLength = 1 if weighting == "T1" else 16
            ds.MagneticFieldStrength = 1.5
            ds.ImagedNucleus = "1H"
            ds.SpacingBetweenSlices = thickness
            ds.WindowCenter = 800
            ds.WindowWidth = 1600
            writer.write(entry, ds, pixels, syntax,
                         Path(study.key, "%02d" % number, "%04d.dcm" % (i + 1)))


def gen_dx(writer, set_name, rows, cols):
    """Chest PA radiograph, DX for presentation."""
    study = Study(set_name, 4, "dx", "p2", "DX", "RADIOGRAPHIE THORAX FACE",
                  "20240220", "083000", "ACC%d0004" % SET_NUMBER[set_name])
    entry = new_series(writer.add_study(study), study, 1, "THORAX PA", EXPLICIT_LE)
    bits = 14
    pixels = dx_image(rows, cols, bits, np.random.default_rng(4004)).tobytes()
    ds = Dataset()
    patient_study_tags(ds, study)
    series_tags(ds, study, 1, entry["description"], "CHEST")
    instance_tags(ds, study, DX_PRESENTATION_STORAGE, 1, 1)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"]
    ds.ImageLaterality = "U"
    ds.ViewPosition = "PA"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    gray_pixel_tags(ds, rows, cols, bits, signed=False)
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = 1 << (bits - 1)
    ds.WindowWidth = 1 << bits
    ds.KVP = 125
    ds.ExposureInuAs = 2000
    ds.DistanceSourceToDetector = 1800
    ds.ImagerPixelSpacing = [round(430.0 / cols, 4)] * 2
    ds.PixelSpacing = ds.ImagerPixelSpacing
    ds.PositionerType = "COLUMN"
    ds.AcquisitionContextSequence = Sequence([])
    ds.DetectorType = "SCINTILLATOR"
    ds.DetectorID = "DET01"
    ds.AnatomicRegionSequence = Sequence([_code("51185008", "SCT", "Chest")])
    ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "postero-anterior")])
    writer.write(entry, ds, pixels, EXPLICIT_LE, Path(study.key, "01", "0001.dcm"))


def _code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def gen_us(writer, set_name, frames, rows, cols):
    """Cardiac-like ultrasound cine loop, JPEG baseline YBR_FULL_422."""
    study = Study(set_name, 5, "us", "p3", "US", "ECHOGRAPHIE ABDOMINALE",
                  "20240305", "111500", "ACC%d0005" % SET_NUMBER[set_name])
    entry = new_series(writer.add_study(study), study, 1, "CINE ABDO", JPEG_BASELINE)
    pixels = us_frames(frames, rows, cols, np.random.default_rng(5005)).tobytes()
    ds = Dataset()
    patient_study_tags(ds, study)
    series_tags(ds, study, 1, entry["description"], "ABDOMEN")
    instance_tags(ds, study, US_MULTIFRAME_STORAGE, 1, 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 33.3
    ds.CineRate = 30
    ds.RecommendedDisplayFrameRate = 30
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    writer.write(entry, ds, pixels, JPEG_BASELINE, Path(study.key, "01", "0001.dcm"))


def generate(set_name, outdir):
    """Generate every study of a set into outdir."""
    for p in PATIENTS.values():
        assert nir_is_valid(p["nir"]), p["nir"]
    sizes = SIZES[set_name]
    writer = Writer(set_name, outdir)
    gen_ct(writer, set_name, *sizes["ct"])
    gen_mr(writer, set_name, *sizes["mr"])
    gen_dx(writer, set_name, *sizes["dx"])
    gen_us(writer, set_name, *sizes["us"])
    writer.finish()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(SIZES), required=True)
    parser.add_argument("outdir")
    args = parser.parse_args()
    generate(args.set, args.outdir)


if __name__ == "__main__":
    main()
