"""Invented merchants and what they sell, with plausible US price ranges (dollars)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    name: str
    low: float
    high: float
    by_weight: bool = False  # priced per lb: quantity is a weight such as 1.52


@dataclass(frozen=True)
class Category:
    merchants: tuple[str, ...]
    products: tuple[Product, ...]
    tips: bool  # whether the receipt may carry a tip line
    long_ok: bool  # whether a 30-item receipt is plausible


def _products(spec: str) -> tuple[Product, ...]:
    """`spec`: one product per line, "NAME|low|high" with an optional "|lb"."""
    out = []
    for line in spec.strip().splitlines():
        name, low, high, *flag = line.strip().split("|")
        out.append(Product(name, float(low), float(high), by_weight=flag == ["lb"]))
    return tuple(out)


GROCERY = Category(
    merchants=("GREEN BASKET MARKET", "FRESHWAY FOODS", "CORNER PANTRY", "VALLEY FRESH GROCERY"),
    products=_products(
        """
        BANANAS|0.49|0.69|lb
        GALA APPLES|1.29|2.49|lb
        RED GRAPES|2.49|3.99|lb
        YELLOW ONIONS|0.89|1.49|lb
        RUSSET POTATOES|0.79|1.29|lb
        TOMATOES ON VINE|1.99|3.49|lb
        BROCCOLI CROWNS|1.49|2.49|lb
        WHOLE MILK 1 GAL|3.29|4.99
        LARGE EGGS 12CT|2.49|5.99
        SHARP CHEDDAR 8OZ|2.99|4.49
        GREEK YOGURT|0.99|1.79
        SALTED BUTTER|3.99|5.49
        WHEAT BREAD|2.49|4.29
        BAGELS 6CT|3.49|4.99
        PEANUT BUTTER|2.99|5.49
        STRAWBERRY JAM|2.79|4.29
        SPAGHETTI 16OZ|1.19|2.29
        MARINARA SAUCE|2.49|4.99
        LONG GRAIN RICE|2.99|6.49
        BLACK BEANS CAN|0.89|1.49
        CHICKEN BREAST|3.49|5.99|lb
        GROUND BEEF 80/20|4.49|6.49|lb
        ATLANTIC SALMON|8.99|12.99|lb
        BABY SPINACH|2.99|4.49
        ROMAINE HEARTS|2.99|3.99
        CARROTS 2LB|1.49|2.79
        ORANGE JUICE 52OZ|3.49|5.29
        COFFEE BEANS 12OZ|7.99|12.99
        GREEN TEA 20CT|2.99|4.99
        CORN FLAKES|3.29|5.49
        ROLLED OATS|2.99|4.99
        TORTILLA CHIPS|2.99|4.99
        SPARKLING WATER 8PK|3.99|5.99
        PAPER TOWELS 6RL|6.99|11.99
        DISH SOAP|2.49|3.99
        LAUNDRY DETERGENT|8.99|14.99
        FROZEN PIZZA|4.99|7.99
        VANILLA ICE CREAM|3.99|6.49
        AVOCADO|0.79|1.99
        LEMONS|0.49|0.89
        """
    ),
    tips=False,
    long_ok=True,
)

HARDWARE = Category(
    merchants=("HARBOR HARDWARE", "PINE RIDGE HOME SUPPLY", "TRUE NORTH TOOLS"),
    products=_products(
        """
        WOOD SCREWS #8 1-1/4|4.98|8.97
        DRYWALL ANCHORS 20PK|3.48|6.98
        MASKING TAPE 1.5IN|3.97|6.47
        DUCT TAPE SILVER|4.97|8.98
        PAINT ROLLER 9IN|5.98|9.98
        INTERIOR PAINT 1 GAL|24.98|42.98
        SANDPAPER 120 GRIT|4.47|7.97
        CAULK WHITE 10OZ|3.98|7.48
        PVC ELBOW 1/2IN|0.68|1.48
        COPPER COUPLING 3/4|1.28|2.98
        EXTENSION CORD 25FT|12.97|24.97
        LED BULB 60W 4PK|7.97|14.97
        LIGHT SWITCH|2.48|5.98
        OUTLET COVER|0.98|2.48
        WIRE NUTS 25PK|3.47|5.98
        HAMMER 16OZ|12.98|24.98
        SCREWDRIVER SET|14.97|29.97
        TAPE MEASURE 25FT|9.97|19.97
        UTILITY KNIFE|6.97|12.97
        WORK GLOVES|7.98|15.98
        ZIP TIES 100PK|4.98|9.98
        WD-40 12OZ|5.98|8.98
        GARDEN HOSE 50FT|19.98|39.98
        POTTING SOIL 1CF|6.97|11.97
        DEADBOLT LOCK|19.98|39.98
        HINGE 3.5IN 2PK|3.98|6.98
        SHELF BRACKET|2.98|6.48
        PLYWOOD 1/2 2X4|12.98|22.98
        STUD 2X4X8|3.98|6.98
        CONCRETE MIX 60LB|5.48|8.48
        WOOD GLUE 8OZ|3.97|6.97
        BATTERIES AA 8PK|7.97|12.97
        """
    ),
    tips=False,
    long_ok=True,
)

PHARMACY = Category(
    merchants=("BLUEBIRD PHARMACY", "MAIN STREET DRUG", "WELLSPRING PHARMACY"),
    products=_products(
        """
        IBUPROFEN 200MG 100CT|6.99|11.99
        ALLERGY RELIEF 30CT|9.99|21.99
        VITAMIN D3 2000IU|7.49|13.99
        MULTIVITAMIN 100CT|9.99|17.99
        BANDAGES ASSORTED|3.99|6.99
        HAND SANITIZER 8OZ|2.99|4.99
        TOOTHPASTE 4OZ|3.49|6.49
        TOOTHBRUSH SOFT|2.99|5.99
        SHAMPOO 12OZ|4.99|8.99
        SUNSCREEN SPF50|8.99|14.99
        COUGH DROPS 30CT|2.49|4.49
        GREETING CARD|2.99|6.99
        BOTTLED WATER|1.29|2.49
        CHOCOLATE BAR|1.49|2.99
        """
    ),
    tips=False,
    long_ok=False,
)

RESTAURANT = Category(
    merchants=("MAPLE STREET DINER", "SUNSET TAQUERIA", "THE RUSTY SPOON", "LUCKY NOODLE HOUSE"),
    products=_products(
        """
        CHEESEBURGER|9.95|15.95
        GRILLED CHICKEN SAND|10.50|14.95
        CAESAR SALAD|8.95|13.50
        FISH TACOS|11.95|16.95
        CARNE ASADA PLATE|14.95|21.95
        PAD THAI|12.50|16.50
        FRENCH FRIES|3.50|5.95
        ONION RINGS|4.50|6.95
        SOUP OF THE DAY|4.95|7.95
        ICED TEA|2.50|3.95
        SODA|2.25|3.50
        HOUSE LEMONADE|3.25|4.50
        DRAFT BEER|5.50|8.00
        APPLE PIE|4.95|6.95
        PANCAKE STACK|7.95|11.95
        """
    ),
    tips=True,
    long_ok=False,
)

COFFEE = Category(
    merchants=("DAILY GRIND COFFEE", "BLUE HERON CAFE", "NORTHSIDE ROASTERS"),
    products=_products(
        """
        LATTE 16OZ|4.45|5.95
        CAPPUCCINO|3.95|5.25
        DRIP COFFEE|2.25|3.25
        COLD BREW|3.95|5.45
        CHAI LATTE|4.25|5.75
        BLUEBERRY MUFFIN|2.95|3.95
        BUTTER CROISSANT|3.25|4.25
        BREAKFAST SANDWICH|5.95|8.45
        AVOCADO TOAST|7.95|10.95
        """
    ),
    tips=True,
    long_ok=False,
)

CATEGORIES = (GROCERY, HARDWARE, PHARMACY, RESTAURANT, COFFEE)

# Malaysian shops, for the minority of receipts in ringgit (the SROIE-style case)
MALAYSIA_CITIES = (
    ("JALAN SULTAN ISMAIL", "KUALA LUMPUR", "50250"),
    ("JALAN SS 2/24", "PETALING JAYA", "47300"),
    ("JALAN WONG AH FOOK", "JOHOR BAHRU", "80000"),
)
