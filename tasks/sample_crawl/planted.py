"""Pages planted for the curation filters: each breaks exactly one rule, on purpose.

Every planted page is ordinary English prose (or the foreign-language equivalent) with one
defect, so it survives every step before the one it was planted for, and that step removes
it. The thresholds they are built against are FineWeb's (datatrove `examples/fineweb.py`); the
reason each one trips its step is written into the ground truth beside it. `margins.problems`
checks each page against every rule except the one it is meant to break.
"""

from __future__ import annotations

import ipaddress
import random
import re

from tasks.sample_crawl.site import Block

# English prose for pages whose only defect is elsewhere. Sentences are drawn without
# replacement, so two pages on a topic share little text.
TOPICS = {
    "garden": (
        "Late spring is the best time to plant out tomatoes, once the nights are warm enough.",
        "A thick layer of compost keeps the soil moist and feeds the worms that keep it healthy.",
        "Beans climb quickly if they have a frame of hazel poles or string to hold on to.",
        "Slugs are most active after rain, so that is the time to check the young lettuces.",
        "A small pond brings frogs into the garden, and the frogs deal with many of the pests.",
        "Most herbs prefer poor, well drained soil and a spot that gets the afternoon sun.",
        "Cutting the flowers regularly encourages sweet peas to keep blooming until autumn.",
        "Leaves raked up in autumn can be stacked in a wire cage and left to rot into mould.",
        "Potatoes should be earthed up as the shoots appear, so that the tubers stay in the dark.",
        "A water butt by the shed collects enough rain to see the greenhouse through a dry week.",
        "Raspberry canes that fruited this year can be cut down to the ground after harvest.",
        "Marigolds planted between the rows are said to keep some insects away from the crops.",
    ),
    "harbour": (
        "The harbour committee met on Tuesday evening to discuss repairs to the old sea wall.",
        "Fishermen say the catch has been better this year than at any time in the last decade.",
        "The ferry timetable will change in October, with fewer crossings early in the morning.",
        "A new footpath along the quay is expected to open before the start of the summer season.",
        "Volunteers spent the weekend clearing rubbish from the beach below the lighthouse.",
        "The lifeboat crew was called out twice last month to help yachts caught in strong winds.",
        "Local schools will take part in a project to record the history of the harbour families.",
        "Traders on the quay hope that the new car park will bring more visitors into the town.",
        "The council has agreed to repaint the railings and replace the broken street lamps.",
        "A study of the estuary found that the number of wading birds has risen steadily.",
        "The annual regatta drew a large crowd despite the grey skies and a cold sea breeze.",
        "Plans to build flats on the site of the old warehouse will be discussed next month.",
    ),
    "running": (
        "The club meets every Thursday at the bridge for an easy run along the river path.",
        "Most of our members started running to get fit and stayed for the company afterwards.",
        "Hill repeats are hard work, but they build strength faster than any other session.",
        "A good pair of trail shoes makes a real difference on muddy paths in the winter.",
        "Runners new to the club are paired with someone who knows the routes well.",
        "The coastal race in September follows the cliff path and finishes at the harbour.",
        "Stretching after a long run helps the legs recover before the next session.",
        "We always wait at the top of each climb so that nobody is left behind.",
        "Several members are training for their first marathon and share tips in the forum.",
        "Head torches are essential for the evening runs once the clocks go back.",
        "The route through the woods is beautiful in autumn but slippery after heavy rain.",
        "Drinking enough water on hot days matters more than most beginners expect.",
    ),
    "network": (
        "A home network is easier to manage when every device has a sensible name.",
        "Most routers let you reserve an address for a printer so that it never changes.",
        "The first step in fixing a slow connection is to find out where the delay happens.",
        "Keeping the firmware of the router up to date closes many well known security holes.",
        "A wired connection is still the most reliable choice for a desktop computer.",
        "Guest networks keep visitors away from the shared folders and the printers.",
        "It is worth writing down the settings of the router before changing any of them.",
        "Interference from neighbouring networks is a common cause of a weak wireless signal.",
        "Backups should be tested now and then, because a backup that cannot be restored is useless.",
        "A small server in the cupboard can share files and music with the whole house.",
        "Strong and different passwords for every service are the cheapest protection there is.",
        "When a device stops responding, restarting it is often the quickest fix.",
    ),
}

FOREIGN = {
    "de": (
        "Die Altstadt liegt direkt am Fluss und ist zu Fuß in wenigen Minuten zu erreichen.",
        "Im Sommer finden auf dem Marktplatz jeden Samstag kleine Konzerte statt.",
        "Wir haben in einer Pension am Stadtrand gewohnt, die sehr sauber und ruhig war.",
        "Das Frühstück war reichlich, mit frischem Brot, Käse und selbstgemachter Marmelade.",
        "Am zweiten Tag sind wir mit dem Fahrrad bis zum See gefahren und haben dort gebadet.",
        "Die Wanderwege sind gut ausgeschildert, aber nach Regen oft sehr rutschig.",
        "Für das Abendessen empfehlen wir das kleine Gasthaus neben der Kirche.",
        "Die Preise sind etwas höher als in der Hauptstadt, aber die Qualität ist ausgezeichnet.",
        "Wer mit dem Zug anreist, sollte die Fahrkarten rechtzeitig im Voraus kaufen.",
        "Im Herbst färben sich die Wälder rund um die Stadt in leuchtenden Farben.",
    ),
    "fr": (
        "Le village se trouve au bord de la mer, à une heure de route de la ville.",
        "Nous avons loué une petite maison avec un jardin plein de fleurs et de citronniers.",
        "Le marché du dimanche matin est le meilleur endroit pour acheter du poisson frais.",
        "Les habitants sont très accueillants et toujours prêts à donner un bon conseil.",
        "Le soir, nous avons dîné sur la terrasse en regardant le coucher du soleil.",
        "La randonnée vers le phare est facile et offre une vue magnifique sur la côte.",
        "Il faut goûter la tarte aux pommes de la boulangerie près de la place de l'église.",
        "En été, il y a beaucoup de monde, alors il vaut mieux réserver longtemps à l'avance.",
        "Le musée du port raconte l'histoire des pêcheurs et de leurs familles.",
        "Nous avons pris le bus pour visiter les villages voisins pendant la semaine.",
    ),
    "es": (
        "El pueblo está en lo alto de una colina y tiene unas vistas preciosas del valle.",
        "Nos alojamos en una casa rural con una cocina grande y una chimenea de piedra.",
        "Por la mañana fuimos al mercado a comprar fruta, queso y pan recién hecho.",
        "La ruta por el río es sencilla y se puede hacer con niños en unas dos horas.",
        "En la plaza mayor hay varios bares donde sirven tapas muy buenas y baratas.",
        "El museo del castillo explica la historia de la región de una forma muy amena.",
        "Recomendamos visitar la zona en primavera, cuando los campos están llenos de flores.",
        "La gente del pueblo es muy amable y siempre tiene tiempo para charlar un rato.",
        "Para llegar es mejor ir en coche, porque el autobús solo pasa dos veces al día.",
        "Por la noche cenamos en un restaurante pequeño con una terraza junto al río.",
    ),
}

LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."

JAVASCRIPT_LINES = (
    "Please enable JavaScript in your browser to see the interactive map of the route.",
    "This page needs JavaScript to load the comments, the photo gallery and the weather forecast.",
    "If JavaScript is turned off, the booking form below will not work and your place cannot be saved.",
    "To turn on JavaScript, open the settings of your browser and allow scripts for this website.",
    "Readers who cannot use JavaScript can ask for a printed copy of the timetable at the office.",
    "Some older browsers do not support the version of JavaScript that this page uses.",
)

REPEATED_LINES = (
    "Replacement windows fitted in one day by our local team",
    "Call now for a free quote on double glazing",
    "Best prices on uPVC doors and windows in the region",
    "Ten year guarantee on every installation we make",
    "Ask about our spring offer on conservatories today",
)

BRACE_LINES = (
    "Dear {first_name}, your discount code is {promo_code} and it is valid until the end of the month.",
    "Hello {{ user.name }}, thank you for joining our mailing list and welcome to the club.",
    "Your order {order_id} has been dispatched and should arrive within three working days.",
)

BOILERPLATE_MAINS = (
    '<div class="gallery"><img src="/img/1.jpg" alt=""><img src="/img/2.jpg" alt=""><img src="/img/3.jpg" alt=""></div>',
    '<form class="login" action="/login"><label>Username</label><input name="user"><label>Password</label><input type="password" name="pw"><button>Sign in</button></form>',
    '<div class="video"><iframe src="https://video.example-cdn.com/embed/8812" width="640" height="360"></iframe></div>',
    '<div class="pager"><a href="?page=1">1</a> <a href="?page=2">2</a> <a href="?page=3">3</a> <a href="?page=4">Next</a></div>',
)

# About 40 words but over 250 characters: under Gopher's 50-word minimum, yet long enough
# that no single 2-, 3- or 4-gram covers a fifth of the text (Gopher's repetition rule runs
# first and counts even a single occurrence), and that trafilatura 1.x does not add its
# fallback extraction, which would print the text twice.
TOO_SHORT = (
    "Our customer service department will be closed on Monday for the national holiday. Deliveries ordered during the weekend are dispatched on Tuesday morning and should normally arrive before Friday afternoon. Thank you for your understanding and continued patience.",
    "Tomorrow evening's training session is cancelled because forecasters expect strong westerly winds along the exposed coastal section. Members should gather beside the footbridge next Thursday instead, weather permitting, and newcomers remain welcome whenever conditions improve.",
    "Harbourside parking is unavailable throughout Sunday morning because volunteers are organising a charity swimming race. Visitors should therefore park beside the railway station and walk through the botanical gardens towards the old waterfront promenade.",
)


def prose(rng: random.Random, topic: str, sentences: int = 9, paragraphs: int = 3) -> list[Block]:
    picked = rng.sample(TOPICS[topic], sentences)
    cuts = sorted(rng.sample(range(1, sentences), paragraphs - 1))
    return [Block("p", " ".join(picked[a:b])) for a, b in zip([0, *cuts], [*cuts, sentences])]


def foreign(rng: random.Random, lang: str) -> list[Block]:
    picked = rng.sample(FOREIGN[lang], 8)
    return [Block("p", " ".join(picked[:4])), Block("p", " ".join(picked[4:]))]


def repeated_lines(rng: random.Random) -> list[Block]:
    """A shop page whose lines repeat: 4 of every 5 lines are copies of earlier ones.

    Each line is under 100 characters, so trafilatura's in-page dedup (which only compares
    longer segments) leaves the repeats for Gopher's duplicate-line rule to count.
    """
    lines = list(REPEATED_LINES)
    rng.shuffle(lines)
    body = [Block("li", line + ".") for _ in range(4) for line in lines]
    intro = Block(
        "p",
        "We have been fitting windows and doors for homes and businesses across the county since the early days of the firm.",
    )
    return [intro, *body]


def with_pii(rng: random.Random) -> tuple[list[Block], list[str], str]:
    """Network advice with a contact address and a public server address to scrub.

    The private router address stays: FineWeb replaces only globally routable IPv4 addresses.
    """
    first, last = rng.choice((("jonas", "weber"), ("maria", "olsen"), ("tariq", "haddad"), ("lena", "fischer")))
    email = f"{first}.{last}@{rng.choice(('harbourmail.net', 'postbox-mail.com', 'fastmail-example.org'))}"
    ip = rng.choice(("81.169.145.12", "151.101.65.69", "185.199.108.153", "95.216.24.32"))
    assert ipaddress.ip_address(ip).is_global
    blocks = prose(rng, "network", 8, 2)
    blocks += [
        Block(
            "p",
            f"Our download mirror moved last week and is now reachable at {ip} for anyone whose resolver still has the old record.",
        ),
        Block("p", f"If you have questions about this guide, write to {email} and we will answer as soon as we can."),
        Block(
            "p",
            "On most home networks the router itself answers at 192.168.1.1, and that address never leaves the house.",
        ),
    ]
    return blocks, [ip, email], "192.168.1.1"


_EDIT_WORDS = ("really", "quite", "often", "nearly", "always", "simply", "later", "again")


def edit_words(blocks: list[Block], rng: random.Random, changes: int) -> list[Block]:
    """An edited copy: `changes` words of the paragraphs replaced by others."""
    slots = [
        (i, m.start(), m.end())
        for i, b in enumerate(blocks)
        if b.tag == "p"
        for m in re.finditer(r"\b[a-z]{4,}\b", b.text)
    ]
    chosen = sorted(rng.sample(slots, min(changes, len(slots))), key=lambda s: (s[0], -s[1]))
    texts = [b.text for b in blocks]
    for i, start, end in chosen:  # right to left within a block, so offsets stay valid
        old = texts[i][start:end]
        new = rng.choice([w for w in _EDIT_WORDS if w != old])
        texts[i] = texts[i][:start] + new + texts[i][end:]
    return [Block(b.tag, t) for b, t in zip(blocks, texts)]


def minimal_pdf(title: str) -> bytes:
    """A small, valid one-page PDF (a non-HTML response the reader must skip)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
