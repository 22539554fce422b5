package sim

// The texts of the simulated calls. A few carry quotes, a backslash, non-ASCII letters
// and a line break, so that the payloads exercise JSON string escaping.

var userPhrases = []string{
	"Hi, I need to move my appointment.",
	"Thursday afternoon if possible.",
	"Can you tell me what time you open on Saturday?",
	"I'd like to book a cleaning for next week.",
	"My name is José Álvarez, A-L-V-A-R-E-Z.",
	"It's about the bill I got last month, it says \"overdue\" but I paid it.",
	"Yes, that works for me.",
	"No, the other one, the 3 PM slot.",
	"Do you take Blue Cross insurance?",
	"I'm calling for my mother, she can't hear well on the phone.",
	"Could you spell the street name for me?",
	"The reference number is 4471-B\\2, I think.",
	"Is Dr. Müller in on Mondays?",
	"Actually, can we make it a bit later, around five?",
	"I have a question about my prescription refill.",
	"That's fine, thank you.",
	"Sorry, I didn't catch that.",
	"I'll pay with the card ending in 4412.",
	"How long will the appointment take?",
	"Can I bring my daughter along? She's 7.",
	"I was told to call back after the test results came in.",
	"Okay. And where do I park?",
	"The price was €120 last time, is it the same?",
	"Please send the confirmation by text message.",
}

var helloPhrases = []string{
	"Hello?",
	"Hello? Are you there?",
	"Hello?? Anyone there?",
	"Hi, can you hear me?",
	"Hello, I'm still here.",
	"Is this thing on?",
}

var replyPhrases = []string{
	"Of course. What day works better for you?",
	"Sorry about that. Thursday at 3 PM is open. Shall I book it?",
	"We open at 9 AM on Saturdays and close at 1 PM.",
	"I can help with that. Could you give me your date of birth?",
	"Thanks, José. I've found your file.",
	"I see a payment on the 12th, so the \"overdue\" notice is a mistake. I'll flag it.",
	"Great, you're all set.",
	"Here are the open slots:\n1. Thursday 3 PM\n2. Friday 10 AM\nWhich one suits you?",
	"Yes, we accept Blue Cross and most other major plans.",
	"No problem, I'll speak slowly.",
	"It's Elm Street: E-L-M.",
	"Dr. Müller sees patients on Mondays and Wednesdays.",
	"Let me check. Five o'clock is available too.",
	"I'll pass your refill request to the pharmacy team; they'll call you back today.",
	"You're welcome. Is there anything else I can do for you?",
	"No worries. I said the appointment is at 10:30 on Friday.",
	"Thank you, the payment went through.",
	"It usually takes about forty minutes.",
	"Yes, children are welcome in the waiting room.",
	"The results are in; the doctor will go over them with you.",
	"There is free parking behind the building, entrance on 2nd Avenue.",
	"The price is still €120, including the follow-up call.",
	"Done. You'll get a text with the details in a minute.",
}

var welcomePhrases = []string{
	"Thanks for calling %s. How can I help?",
	"Hello, you've reached %s. What can I do for you today?",
	"Good day, this is the front desk of %s. How may I help?",
}

var clinics = []string{"Northside", "Riverside Dental", "Oak Park Family Practice", "Lakeview Physio", "St. Anne's"}

var campaigns = []string{"reminders", "inbound", "follow-up", "billing"}

// userFillers and replyFillers lengthen texts towards Config.PayloadBytes: a caller who
// explains more, an assistant who says more.
var userFillers = []string{
	"I have been trying to reach you since this morning.",
	"My insurance changed at the start of the year, so please check that too.",
	"I work until four, so anything after that is better for me.",
	"Last time the waiting room was very full, so an early slot would be nice.",
	"I also wanted to ask whether I need to bring anything with me.",
	"My phone number is the same as before, nothing has changed there.",
	"If that is not possible, the week after would also be okay.",
	"I am not sure if my husband already called about this.",
	"The letter I got did not mention a time, only the date.",
	"Sorry, there is some noise here, I am on the bus.",
}

var replyFillers = []string{
	"I have noted that in your file so the team can see it.",
	"You will receive a reminder the day before your appointment.",
	"If anything changes, you can call us or reply to the text message.",
	"Please arrive ten minutes early to fill in the paperwork.",
	"Our office is on the second floor, the elevator is on the left.",
	"I have also updated the contact details we have for you.",
	"The doctor asked me to remind you to bring your current medication list.",
	"There is no extra charge for rescheduling more than a day in advance.",
	"I can send you the address and the opening hours by text as well.",
	"Let me know if you would like me to book the follow-up visit now too.",
}

// The tools the simulated assistants call, each with the arguments it is called with
// and the result it gives (JSON in a string, as the platforms carry them).
var tools = []struct{ name, arguments, result string }{
	{"lookup_appointment", `{"patientId":"P-20931"}`, `{"found":true,"slot":"2025-11-27T15:00:00Z","doctor":"Dr. M\u00fcller"}`},
	{"check_availability", `{"day":"thursday","after":"14:00"}`, `{"slots":["14:30","15:00","16:15"]}`},
	{"lookup_invoice", `{"invoice":"INV-4471"}`, `{"status":"paid","amount":120.0,"currency":"EUR"}`},
	{"verify_insurance", `{"provider":"Blue Cross","memberId":"XJ-88120"}`, `{"covered":true,"copay":25}`},
}
