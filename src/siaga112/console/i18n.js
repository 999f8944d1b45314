// Words of the console: Bahasa Indonesia first (the centre's language), English as a switch.

const WORDS = {
  id: {
    lang_switch: "English", sign_in: "Masuk", sign_out: "Keluar", token: "Token API",
    sign_in_hint: "Masukkan token API Anda. Token operator terikat pada telepon mejanya.",
    desk: "Meja", wall: "Dinding", connected: "tersambung", reconnecting: "menyambung ulang…",
    state: "Status", available: "Siap", paused: "Jeda", logged_out: "Keluar log",
    ringing: "Berdering", on_call: "Menerima panggilan", wrapup: "Penyelesaian",
    pause_reason: "Alasan jeda", set_available: "Siap", set_paused: "Jeda",
    set_logged_out: "Keluar log", no_call: "Tidak ada panggilan.",
    card: "Kartu panggilan", number: "Nomor", line_type: "Jenis saluran", mobile: "Seluler",
    landline: "Telepon rumah", unknown: "Tidak diketahui", waited: "Menunggu",
    flags: "Tanda", priority: "prioritas", blocked_bypass: "tekan 5 melewati blokir",
    silent: "diam", silent_emergency: "darurat diam (5 5)", call_state: "Keadaan",
    st_arrived: "masuk", st_queued: "mengantre", st_ringing: "berdering",
    st_connected: "tersambung", st_ended: "selesai (penyelesaian)",
    history: "Riwayat nomor ini", history_none: "Belum pernah menelepon.",
    history_unavailable: "Riwayat tidak tersedia (basis data).",
    date: "Tanggal", disposition: "Disposisi", category: "Kategori", operator: "Operator",
    marks: "Tanda iseng/kosong dalam {h} jam", blocked_now: "DIBLOKIR sekarang",
    until: "sampai", until_col: "Sampai", forever: "tanpa batas", referred_now: "DIRUJUK ke kementerian",
    location: "Lokasi", no_location: "Tidak ada lokasi.",
    mark: "Tandai", genuine: "Asli", prank: "Iseng", ghost: "Panggilan kosong",
    blocked: "Diblokir", abandoned: "Ditinggalkan", fallback: "Cadangan",
    choose_category: "— pilih kategori —", note: "Catatan", save_note: "Simpan catatan",
    saved: "Tersimpan", agencies: "Libatkan instansi", agency_on_call: "Instansi pada panggilan",
    line_ringing: "berdering", line_answered: "bergabung", line_accepted: "menerima kasus",
    line_moving: "tim berangkat", line_failed: "gagal", fallback_tried: "cadangan dicoba",
    moving_clock: "Sisa waktu tim berangkat", overdue: "TERLAMBAT", team_moving: "Tim berangkat",
    close_card: "Tutup kartu", queue: "Antrean", queue_empty: "Antrean kosong.",
    operators: "Operator", call: "Panggilan", since: "Sejak", idle_since: "menganggur sejak",
    kpis: "KPI hari ini", calls: "Panggilan", answered: "Dijawab",
    within10: "Dijawab ≤ 10 dtk", p90: "Tunggu p90", abandoned_pct: "Ditinggalkan",
    prank_pct: "Iseng", alerts: "Terlambat", overdue_dispatches: "Pengiriman terlambat",
    overdue_complaints: "Keluhan terlambat", none: "Tidak ada.", agency: "Instansi",
    requested: "Diminta", complaint: "Keluhan", filed: "Diajukan",
    blocklist: "Daftar blokir", referrals: "Rujukan", reason: "Alasan", by: "Oleh",
    hours: "Jam (kosong = tanpa batas)", block: "Blokir", unblock: "Buka blokir",
    unblock_reason: "Alasan buka blokir:", count: "Jumlah", referred: "Dirujuk",
    error: "Gagal", seconds: "dtk", signed_in_as: "Masuk sebagai",
    agency_refused: "Token agensi tidak dapat membuka konsol.",
    cat_01: "Kebakaran", cat_02: "Kecelakaan lalu lintas", cat_03: "Pohon tumbang",
    cat_04: "Kekerasan dalam rumah tangga", cat_05: "Perampokan atau kejahatan lain",
    cat_06: "Darurat kesehatan", cat_07: "Ambulans", cat_08: "Mobil jenazah",
    cat_09: "Bencana alam", cat_10: "Stunting anak", cat_11: "Hewan atau sarang serangga",
    cat_12: "Lainnya",
  },
  en: {
    lang_switch: "Bahasa Indonesia", sign_in: "Sign in", sign_out: "Sign out", token: "API token",
    sign_in_hint: "Enter your API token. An operator's token is bound to their desk phone.",
    desk: "Desk", wall: "Wall", connected: "connected", reconnecting: "reconnecting…",
    state: "State", available: "Available", paused: "Paused", logged_out: "Logged out",
    ringing: "Ringing", on_call: "On a call", wrapup: "Wrap-up",
    pause_reason: "Pause reason", set_available: "Available", set_paused: "Pause",
    set_logged_out: "Log out", no_call: "No call.",
    card: "Call card", number: "Number", line_type: "Line type", mobile: "Mobile",
    landline: "Landline", unknown: "Unknown", waited: "Waited",
    flags: "Flags", priority: "priority", blocked_bypass: "pressed 5 through a block",
    silent: "silent", silent_emergency: "silent emergency (5 5)", call_state: "State",
    st_arrived: "arrived", st_queued: "queued", st_ringing: "ringing",
    st_connected: "connected", st_ended: "ended (wrap-up)",
    history: "This number's history", history_none: "No earlier calls.",
    history_unavailable: "History unavailable (database).",
    date: "Date", disposition: "Disposition", category: "Category", operator: "Operator",
    marks: "Prank/ghost marks in {h} h", blocked_now: "BLOCKED now",
    until: "until", until_col: "Until", forever: "no expiry", referred_now: "REFERRED to the ministry",
    location: "Location", no_location: "No location.",
    mark: "Mark", genuine: "Genuine", prank: "Prank", ghost: "Ghost call",
    blocked: "Blocked", abandoned: "Abandoned", fallback: "Fallback",
    choose_category: "— choose a category —", note: "Note", save_note: "Save note",
    saved: "Saved", agencies: "Bring in an agency", agency_on_call: "Agencies on the call",
    line_ringing: "ringing", line_answered: "joined", line_accepted: "accepted the case",
    line_moving: "team moving", line_failed: "failed", fallback_tried: "fallback tried",
    moving_clock: "Time left until team moving", overdue: "OVERDUE", team_moving: "Team moving",
    close_card: "Close card", queue: "Queue", queue_empty: "Nobody waiting.",
    operators: "Operators", call: "Call", since: "Since", idle_since: "idle since",
    kpis: "Today's KPIs", calls: "Calls", answered: "Answered",
    within10: "Answered ≤ 10 s", p90: "p90 wait", abandoned_pct: "Abandoned",
    prank_pct: "Prank", alerts: "Overdue", overdue_dispatches: "Overdue dispatches",
    overdue_complaints: "Overdue complaints", none: "None.", agency: "Agency",
    requested: "Requested", complaint: "Complaint", filed: "Filed",
    blocklist: "Blocklist", referrals: "Referrals", reason: "Reason", by: "By",
    hours: "Hours (empty = no expiry)", block: "Block", unblock: "Unblock",
    unblock_reason: "Reason for unblocking:", count: "Count", referred: "Referred",
    error: "Failed", seconds: "s", signed_in_as: "Signed in as",
    agency_refused: "Agency tokens cannot open the console.",
    cat_01: "Fire", cat_02: "Traffic accident", cat_03: "Fallen tree",
    cat_04: "Domestic violence", cat_05: "Robbery or other crime",
    cat_06: "Health emergency", cat_07: "Ambulance", cat_08: "Hearse",
    cat_09: "Natural disaster", cat_10: "Child stunting", cat_11: "Animal or insect nest",
    cat_12: "Other",
  },
};

let lang = localStorage.getItem("siaga112.lang") === "en" ? "en" : "id";

export function t(key, vars = {}) {
  let s = WORDS[lang][key] ?? WORDS.id[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, String(v));
  return s;
}

export function language() { return lang; }

export function toggleLanguage() {
  lang = lang === "id" ? "en" : "id";
  localStorage.setItem("siaga112.lang", lang);
  document.documentElement.lang = lang;
}

// An agency's name in the console's language: the directory says "Bahasa (English)".
export function agencyName(name) {
  const m = /^(.*?)\s*\(([^()]*)\)\s*$/.exec(name);
  if (!m) return name;
  return lang === "id" ? m[1] : `${m[2]} — ${m[1]}`;
}
