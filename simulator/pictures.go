package simulator

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Pictures the simulator serves: small JPEGs drawn on the fly, so a page
// or a notification shows something of the print, not a grey square.
// A camera's picture shows the part rising on the build plate as its job
// goes on; a preview, the part as sliced. Both are drawn in the colour of
// the job's name.

const picW, picH = 320, 240

// pictureCache keeps drawn pictures: a camera's changes only when its
// job's progress moves by a percent.
var pictureCache sync.Map // key -> []byte

// drawPicture draws a part of the colour of name, risen to progress
// (0–1) on a build plate: under a camera's light (camera) or on a
// preview's plain background.
func drawPicture(name string, progress float64, camera bool) []byte {
	key := fmt.Sprintf("%s|%d|%v", name, int(progress*100), camera)
	if b, ok := pictureCache.Load(key); ok {
		return b.([]byte)
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	sum := h.Sum32()
	part := color.RGBA{R: uint8(60 + sum%160), G: uint8(60 + (sum>>8)%160), B: uint8(60 + (sum>>16)%160), A: 255}
	img := image.NewRGBA(image.Rect(0, 0, picW, picH))
	bg := color.RGBA{R: 236, G: 239, B: 243, A: 255}
	if camera {
		bg = color.RGBA{R: 34, G: 38, B: 46, A: 255}
	}
	draw.Draw(img, img.Bounds(), &image.Uniform{bg}, image.Point{}, draw.Src)
	// The build plate, in perspective: a band near the bottom.
	plate := color.RGBA{R: 120, G: 126, B: 136, A: 255}
	for y := picH - 60; y < picH-40; y++ {
		inset := (picH - 40 - y) * 2
		for x := 30 + inset; x < picW-30-inset; x++ {
			img.Set(x, y, plate)
		}
	}
	// The part: a stack of layers whose outline follows a wave of the
	// name's hash, as tall as the print has gone.
	full := 130.0
	height := int(full * math.Max(0.04, math.Min(progress, 1)))
	phase := float64(sum%628) / 100
	for i := 0; i < height; i++ {
		y := picH - 52 - i
		w := 50 + 22*math.Sin(phase+float64(i)/18) + 10*math.Cos(float64(i)/7)
		shade := 0.75 + 0.25*float64(i%6)/6
		c := color.RGBA{R: uint8(float64(part.R) * shade), G: uint8(float64(part.G) * shade), B: uint8(float64(part.B) * shade), A: 255}
		for x := picW/2 - int(w); x < picW/2+int(w); x++ {
			img.Set(x, y, c)
		}
	}
	if camera {
		// The nozzle above the part.
		nozzle := color.RGBA{R: 200, G: 160, B: 60, A: 255}
		top := picH - 52 - height
		for y := top - 26; y < top-4; y++ {
			for x := picW/2 - 5 + int(30*math.Sin(phase*3)); x < picW/2+5+int(30*math.Sin(phase*3)); x++ {
				if y >= 0 {
					img.Set(x, y, nozzle)
				}
			}
		}
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80})
	b := buf.Bytes()
	pictureCache.Store(key, b)
	return b
}

// servePicture writes a JPEG, not to be cached by the client.
func servePicture(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// cameraPicture is what the camera of printer p sees now.
func (s *Server) cameraPicture(p *printer, now time.Time) []byte {
	name, progress := p.spec.name, 0.0
	if j := p.job; j != nil {
		name = j.name
		if j.total > 0 {
			progress = float64(j.elapsedAt(now)) / float64(j.total)
		}
		if j.status == "post_print" || j.status == "wait_cleanup" {
			progress = 1
		}
	}
	return drawPicture(name, progress, true)
}

// snapshotPicture serves the picture a webcam snapshot action took: what
// the camera of its cluster's first printer sees now.
func (s *Server) snapshotPicture(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSuffix(r.PathValue("id"), ".jpg")
	s.mu.Lock()
	var b []byte
	if a := s.actions[id]; a != nil {
		if c := s.world.cluster(a.clusterID); c != nil && len(c.printers) > 0 {
			now := s.SimNow()
			s.world.advanceCluster(c, now)
			b = s.cameraPicture(c.printers[0], now)
		}
	}
	s.mu.Unlock()
	if b == nil {
		http.NotFound(w, r)
		return
	}
	servePicture(w, b)
}

// preview serves the preview of the job whose uuid the path names.
func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSuffix(r.PathValue("id"), ".jpg")
	s.mu.Lock()
	name := ""
	for _, c := range s.world.clusters {
		if j := c.findJob(id); j != nil {
			name = j.name
		}
	}
	s.mu.Unlock()
	if name == "" {
		http.NotFound(w, r)
		return
	}
	servePicture(w, drawPicture(name, 1, false))
}
