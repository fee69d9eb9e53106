#!/usr/bin/python3
"""A data set whose right answers are known, for the pretrained text direction
model (scripts/fetch-models.sh): lines of words rendered on a 192 x 48 white
canvas, half upright and half turned 180 degrees. The answer is in each file's
name: up_NNNN.png is "0", down_NNNN.png is "180".

    tools/text_lines.py N DIR     N lines (N/2 of each), PNG, into DIR

Deterministic (a seeded RNG, fonts from Debian's fonts-dejavu-core): the same
files on every run. Font, size, offset and ink vary from line to line, so the
set is not one picture repeated. An upright line and its turned twin are
rendered from different draws, so the model cannot answer by comparing pairs.
"""
import os, random, sys
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf"]
WORDS = ("the of and to in is it that was for on are as with his they at be this from have or "
         "by one had not but what all were when we there can an your which their said if do "
         "will each about how up out them then she many some so these would other into has "
         "more her two like him see time could no make than first been its who now people my "
         "made over did down only way find use may water long little very after words called "
         "just where most know get through back much before go good new write our used me "
         "man too any day same right look think also around another came come work three "
         "word must because does part even place well such here take why things help put "
         "years different away again off went old number great tell men say small every "
         "found still between name should home big give air line set own under read last "
         "never us left end along while might next sound below saw something thought both "
         "few those always looked show large often together asked house world going want "
         "school important until form food keep children feet land side without boy once "
         "animals life enough took sometimes four head above kind began almost live page "
         "got earth need far hand high year mother light parts country father let night "
         "following picture being study second eyes soon times story boys since white days "
         "ever paper hard near sentence better best across during today others however sure "
         "means knew try told young miles sun ways thing whole hear example heard several "
         "change answer room sea against top turned learn point city play toward five using "
         "himself usually money seen car morning").split()
W, H = 192, 48


def line(r):
    """One rendered upright line: words until the canvas is full."""
    font = ImageFont.truetype(os.path.join(FONT_DIR, r.choice(FONTS)), r.randint(24, 32))
    x, y = r.randint(2, 12), r.randint(2, 10)
    text = r.choice(WORDS)
    while True:
        more = text + " " + r.choice(WORDS)
        if x + font.getlength(more) > W - 2:
            break
        text = more
    # A first word wider than the canvas is cut: a line runs off the edge in
    # real crops too.
    bg = r.randint(225, 255)
    ink = r.randint(0, 60)
    img = Image.new("RGB", (W, H), (bg, bg, bg))
    d = ImageDraw.Draw(img)
    d.text((x, y), text, fill=(ink, ink, ink), font=font)
    return img


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: text_lines.py N DIR")
    n, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    r = random.Random(1515)
    for i in range(n):
        img = line(r)
        if i % 2:
            img.rotate(180).save(os.path.join(out, "down_%04d.png" % (i // 2)), optimize=False)
        else:
            img.save(os.path.join(out, "up_%04d.png" % (i // 2)), optimize=False)
    print("text_lines: %s: %d lines (%d upright, %d turned 180)" % (out, n, (n + 1) // 2, n // 2),
          file=sys.stderr)


if __name__ == "__main__":
    main()
